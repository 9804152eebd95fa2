"""Tests of featgap.probes.extract: reading named layers of featgap models and of a plain
torchvision ResNet, against outputs computed independently by calling the modules by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from featgap import FeatgapError
from featgap.models import create
from featgap.probes import LayerReader, extract_features, pool_features

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def smallcnn():
    torch.manual_seed(0)
    return create("smallcnn", 10, 1).eval()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_pool_features_against_numpy():
    t = torch.randn(3, 4, 5, 6)
    a = t.numpy()
    np.testing.assert_allclose(pool_features(t, "avg").numpy(), a.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pool_features(t, "flatten").numpy(), a.reshape(3, -1))
    flat = torch.randn(3, 7)
    assert pool_features(flat, "avg") is not None and torch.equal(pool_features(flat, "avg"), flat)
    with pytest.raises(FeatgapError, match="unknown pooling"):
        pool_features(t, "max")


def test_featgap_model_layers_match_a_manual_forward(smallcnn):
    x = torch.rand(9, 1, 28, 28)
    feats = extract_features(smallcnn, x, batch_size=4)  # default: the model's layer_names
    assert list(feats) == ["stage1", "stage2", "pool"]
    with torch.no_grad():
        s1 = smallcnn.stage1(smallcnn.normalize(x))
        s2 = smallcnn.stage2(s1)
        z = smallcnn.pool(s2)
    np.testing.assert_allclose(feats["stage1"].numpy(), s1.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["stage2"].numpy(), s2.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["pool"].numpy(), z.numpy(), rtol=1e-5, atol=1e-6)
    # "pool" is features(x) by contract, and "logits" is the model's output
    both = extract_features(smallcnn, x, ["pool", "logits"], batch_size=9)
    with torch.no_grad():
        np.testing.assert_allclose(both["pool"].numpy(), smallcnn.features(x).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(both["logits"].numpy(), smallcnn(x).numpy(), rtol=1e-5, atol=1e-6)


def test_flatten_keeps_every_value(smallcnn):
    x = torch.rand(2, 1, 28, 28)
    feats = extract_features(smallcnn, x, ["stage2"], pool="flatten")
    assert feats["stage2"].shape == (2, 32 * 7 * 7)


def test_uint8_images_are_scaled(smallcnn):
    x8 = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    a = extract_features(smallcnn, x8, ["pool"])["pool"]
    b = extract_features(smallcnn, x8.float() / 255, ["pool"])["pool"]
    torch.testing.assert_close(a, b)


def test_torchvision_resnet_by_module_and_graph_node(resnet):
    x = torch.rand(3, 3, 32, 32)
    feats = extract_features(resnet, x, ["layer2", "layer3.1.conv2", "avgpool", "flatten", "logits"])
    with torch.no_grad():
        h = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
        l2 = resnet.layer2(resnet.layer1(h))
        l3 = resnet.layer3(l2)
        l4 = resnet.layer4(l3)
        pooled = torch.flatten(resnet.avgpool(l4), 1)
        logits = resnet.fc(pooled)
        block = resnet.layer3[1]
        inner = block.conv2(block.relu(block.bn1(block.conv1(resnet.layer3[0](l2)))))
    np.testing.assert_allclose(feats["layer2"].numpy(), l2.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["layer3.1.conv2"].numpy(), inner.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["avgpool"].numpy(), pooled.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["flatten"].numpy(), pooled.numpy(), rtol=1e-4, atol=1e-5)  # an FX node
    np.testing.assert_allclose(feats["logits"].numpy(), logits.numpy(), rtol=1e-4, atol=1e-5)


def test_reused_module_is_a_clear_error(resnet):
    with pytest.raises(FeatgapError, match="ran 2 times"):
        extract_features(resnet, torch.rand(1, 3, 32, 32), ["layer1.0.relu"])


def test_bad_layer_names(resnet, smallcnn):
    with pytest.raises(FeatgapError, match="unknown layer 'nope'"):
        extract_features(resnet, torch.rand(1, 3, 32, 32), ["nope"])
    with pytest.raises(FeatgapError, match="no layer_names"):
        extract_features(resnet, torch.rand(1, 3, 32, 32))
    with pytest.raises(FeatgapError, match="twice"):
        extract_features(smallcnn, torch.rand(1, 1, 28, 28), ["pool", "pool"])
    with pytest.raises(FeatgapError, match="empty"):
        extract_features(smallcnn, torch.rand(1, 1, 28, 28), [])


def test_reader_keeps_gradients_and_removes_hooks(smallcnn):
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    with LayerReader(smallcnn, ["stage2"]) as read:
        out = read(x)["stage2"]
    (g,) = torch.autograd.grad(out.sum(), x)
    assert g.abs().sum() > 0
    assert not smallcnn.stage2._forward_hooks  # removed on exit
    with pytest.raises(RuntimeError, match="with"):
        LayerReader(smallcnn, ["stage2"])(x)


def test_extraction_restores_training_mode_and_takes_no_grad():
    model = create("preact_resnet18", 10, 3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    feats = extract_features(model, torch.rand(2, 3, 32, 32), ["stage1", "pool"])
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        if k in before:
            assert torch.equal(v, before[k]), f"{k} changed: extraction must run in eval mode"
    assert not feats["pool"].requires_grad


def test_any_module_without_parameters():
    model = nn.Sequential(nn.Flatten(), nn.ReLU())
    x = torch.randn(3, 2, 2)
    feats = extract_features(model, x, ["1"])
    np.testing.assert_array_equal(feats["1"].numpy(), np.maximum(x.numpy().reshape(3, 4), 0))


# ----------------------------------------------------------------------------- in-place ops after a read layer

def _no_inplace(model: nn.Module) -> nn.Module:
    """A deep copy with every module's ``inplace`` flag off (ReLU, ReLU6, ...): the reference network."""
    import copy

    ref = copy.deepcopy(model)
    for m in ref.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return ref


def _hooked_reference(ref: nn.Module, x: torch.Tensor, layers: list[str], pool: str = "avg") -> dict[str, torch.Tensor]:
    """Outputs of module ``layers`` of an in-place-free copy, by forward hooks (no forward code mutates them)."""
    seen: dict[str, torch.Tensor] = {}
    handles = [ref.get_submodule(n).register_forward_hook(
        lambda m, a, out, n=n: seen.__setitem__(n, pool_features(out.detach().clone(), pool))) for n in layers]
    with torch.no_grad():
        ref(x)
    for h in handles:
        h.remove()
    return seen


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def torchvision_nets():
    """resnet18, a small DenseNet (torchvision's DenseNet class, 2 blocks of 2 layers) and mobilenet_v2,
    untrained, eval mode; one 64×64 image keeps the whole family of tests under a second or two."""
    torch.manual_seed(0)
    nets = {"resnet18": torchvision.models.resnet18(weights=None, num_classes=10),
            "densenet": torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16,
                                                   bn_size=2, num_classes=10),
            "mobilenet_v2": torchvision.models.mobilenet_v2(weights=None, num_classes=10)}
    return {k: v.eval() for k, v in nets.items()}


# layer -> rectified/modified in place later by: (torchvision's own code)
INPLACE_AFTER = {
    "resnet18": ["bn1",                                          # ReLU(inplace=True)
                 "layer1.0.bn1", "layer2.1.bn1"],                 # the block's ReLU(inplace=True)
    "densenet": ["features.norm0",                               # relu0(inplace=True)
                 "features.transition1.norm",                    # the transition's relu(inplace=True)
                 "features.denseblock1.denselayer1.norm2"],      # relu2(inplace=True)
    "mobilenet_v2": ["features.0.1",                             # ReLU6(inplace=True)
                     "features.1.conv.0.1", "features.5.conv.1.1"],
}


@pytest.mark.parametrize("net", list(INPLACE_AFTER))
def test_a_layer_modified_in_place_later_is_read_as_it_was_produced(torchvision_nets, net):
    model = torchvision_nets[net]
    x = torch.rand(1, 3, 64, 64)
    layers = INPLACE_AFTER[net]
    ref = _hooked_reference(_no_inplace(model), x, layers)
    feats = extract_features(model, x, layers)
    for name in layers:
        assert (ref[name] < 0).any(), f"{name}: the reference must have values a ReLU would change"
        _close(feats[name], ref[name])
    flat = extract_features(model, x, layers[:1], pool="flatten")  # the pooled tensor is a view: cloned
    _close(flat[layers[0]], _hooked_reference(_no_inplace(model), x, layers[:1], "flatten")[layers[0]])


def test_residual_add_in_place_and_functional_relu_do_not_change_what_was_read(torchvision_nets):
    """ResNet's ``out += identity`` after bn2, DenseNet's ``F.relu(features, inplace=True)`` after
    the whole ``features``: compared with forwards that cannot be in place (modules called by hand)."""
    x = torch.rand(1, 3, 64, 64)
    resnet = _no_inplace(torchvision_nets["resnet18"])
    with torch.no_grad():
        h = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
        block = resnet.layer1[0]
        bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(h)))))
        add = bn2 + h
    feats = extract_features(torchvision_nets["resnet18"], x, ["layer1.0.bn2", "layer1.0.add", "layer1.0.relu_1"])
    _close(feats["layer1.0.bn2"], bn2.mean(dim=(2, 3)))  # hooked module, then `out += identity`
    # graph nodes: add is rectified in place by relu_1 when both are requested
    assert (add.mean(dim=(2, 3)) < 0).any()
    _close(feats["layer1.0.add"], add.mean(dim=(2, 3)))
    _close(feats["layer1.0.relu_1"], add.relu().mean(dim=(2, 3)))
    dense = torchvision_nets["densenet"]
    with torch.no_grad():
        body = _no_inplace(dense).features(x)
    feats = extract_features(dense, x, ["features", "features.norm5", "relu"])
    assert (body.mean(dim=(2, 3)) < 0).any()
    _close(feats["features"], body.mean(dim=(2, 3)))
    _close(feats["features.norm5"], body.mean(dim=(2, 3)))
    _close(feats["relu"], body.relu().mean(dim=(2, 3)))


def test_gradients_through_a_layer_modified_in_place_later_are_those_of_its_own_value(torchvision_nets):
    model = torchvision_nets["resnet18"]
    ref = _no_inplace(model)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    with LayerReader(model, ["bn1"]) as read:
        (g,) = torch.autograd.grad(read(x)["bn1"].sum(), x)
    (g_ref,) = torch.autograd.grad(ref.bn1(ref.conv1(x)).mean(dim=(2, 3)).sum(), x)
    _close(g, g_ref)
