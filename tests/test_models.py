"""The FeatureModel contract, checked for every model in the registry.

WRN-34-10 has ~46 M parameters, so it is built once (module-scoped fixture) and only fed one
3×32×32 image; the other models are rebuilt per test, for 1 and 3 input channels.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from featgap.errors import FeatgapError
from featgap.models import MODELS, FeatureModel, create
from featgap.models.wideresnet import WideResNet

FEATURE_DIM = {"smallcnn": 128, "preact_resnet18": 512, "resnet18": 512, "wrn34_10": 640}
# Architecture pins for the published models (smallcnn is featgap's own and may change; only
# its contract is checked). Parameters outside the head: the published 10-class totals
# (11,173,962 / 46,160,474, and kuangliu's 11,171,146 + 1,024 for the final BN) minus the head.
BODY_PARAMS = {"preact_resnet18": 11_167_040, "resnet18": 11_168_832, "wrn34_10": 46_154_064}
STEM_OUT = {"preact_resnet18": 64, "resnet18": 64, "wrn34_10": 16}  # out channels of the 3×3 stem
# (channels, height, width) of each layer's output for a 32×32 input
LAYER_SHAPES = {
    "resnet18": {"stem": (64, 32, 32), "stage1": (64, 32, 32), "stage2": (128, 16, 16),
                 "stage3": (256, 8, 8), "stage4": (512, 4, 4), "pool": (512,)},
    "wrn34_10": {"stem": (16, 32, 32), "stage1": (160, 32, 32), "stage2": (320, 16, 16),
                 "stage3": (640, 8, 8), "pool": (640,)},
}
LAYER_SHAPES["preact_resnet18"] = LAYER_SHAPES["resnet18"]
SIZE = {"smallcnn": 28}  # everything else: 32×32
NORM = {1: ((0.1307,), (0.3081,)), 3: ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))}
BIG = "wrn34_10"
CASES = [(n, c) for n in MODELS if n != BIG for c in (1, 3)] + [(BIG, 3)]


def build(name: str, channels: int, normalised: bool = True) -> FeatureModel:
    torch.manual_seed(0)
    mean, std = NORM[channels] if normalised else (None, None)
    return create(name, num_classes=7, in_channels=channels, mean=mean, std=std).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions gain little from a 2nd thread, and oversubscribed OpenMP threads
    (another torch process on a 2-core machine) made this file ~7× slower; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def big_model() -> FeatureModel:
    return build(BIG, 3)


@pytest.fixture(params=CASES, ids=[f"{n}-c{c}" for n, c in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, int, FeatureModel, torch.Tensor]:
    name, channels = request.param
    model = request.getfixturevalue("big_model") if name == BIG else build(name, channels)
    size = SIZE.get(name, 32)
    x = torch.rand(1 if name == BIG else 2, channels, size, size, generator=torch.Generator().manual_seed(1))
    return name, channels, model, x


def test_tables_cover_the_registry() -> None:
    assert set(FEATURE_DIM) == set(MODELS)
    assert set(BODY_PARAMS) == set(STEM_OUT) == set(LAYER_SHAPES) == set(MODELS) - {"smallcnn"}


def test_shapes_and_feature_dim(case) -> None:
    name, channels, model, x = case
    assert model.feature_dim == FEATURE_DIM[name]
    assert (model.num_classes, model.in_channels) == (7, channels)
    assert isinstance(model.head, nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (FEATURE_DIM[name], 7)
    with torch.no_grad():
        assert model(x).shape == (x.shape[0], 7)
        assert model.features(x).shape == (x.shape[0], FEATURE_DIM[name])


def test_head_of_features_is_forward(case) -> None:
    _, _, model, x = case
    with torch.no_grad():
        logits = model(x)
        assert torch.equal(model.head(model.features(x)), logits)
        assert not torch.equal(logits, torch.zeros_like(logits))


PINNED = [c for c in CASES if c[0] in BODY_PARAMS]


@pytest.mark.parametrize("case", PINNED, ids=[f"{n}-c{c}" for n, c in PINNED], indirect=True)
def test_parameter_count(case) -> None:
    name, channels, model, _ = case
    body = sum(p.numel() for k, p in model.named_parameters() if not k.startswith("head."))
    # the tables are for 3 input channels; the first 3×3 conv has STEM_OUT·C·9 weights
    assert body == BODY_PARAMS[name] - (3 - channels) * STEM_OUT[name] * 9


def test_layers_are_hookable(case) -> None:
    name, _, model, x = case
    assert model.layer_names[-1] == "pool"
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in model.layer_names}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda _m, _i, out, n=n: seen[n].append(out.detach().clone())) for n in model.layer_names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    assert {n: len(v) for n, v in seen.items()} == {n: 1 for n in model.layer_names}
    shapes = {n: tuple(v[0].shape[1:]) for n, v in seen.items()}
    assert shapes["pool"] == (FEATURE_DIM[name],)
    assert shapes == LAYER_SHAPES.get(name, shapes)
    with torch.no_grad():
        assert torch.equal(seen["pool"][0], model.features(x))


def test_normalisation_is_inside_the_model(case) -> None:
    name, channels, model, x = case
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in NORM[channels])
    with torch.no_grad():
        expected = model(x)
        if name == BIG:  # one instance only: switch its normalisation to identity and back
            saved = model.normalize.mean.clone(), model.normalize.std.clone()
            try:
                model.normalize.mean.zero_()
                model.normalize.std.fill_(1.0)
                got, raw = model((x - mean) / std), model(x)
            finally:
                model.normalize.mean.copy_(saved[0])
                model.normalize.std.copy_(saved[1])
        else:
            plain = build(name, channels, normalised=False)
            weights = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
            missing, unexpected = plain.load_state_dict(weights, strict=False)
            assert (sorted(missing), unexpected) == (["normalize.mean", "normalize.std"], [])
            got, raw = plain((x - mean) / std), plain(x)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(raw, expected, atol=1e-4)  # so the check above can fail


def test_input_gradient_flows(case) -> None:
    _, _, model, x = case
    x = x.clone().requires_grad_(True)
    model(x).logsumexp(dim=1).sum().backward()
    model.zero_grad(set_to_none=True)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_safetensors_round_trip(case, tmp_path) -> None:
    _, _, model, x = case
    path = tmp_path / "model.safetensors"
    original = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(x)
    save_file(model.state_dict(), str(path))
    try:
        with torch.no_grad():
            for t in model.state_dict().values():  # scramble weights and BN statistics
                if t.is_floating_point():
                    t.add_(torch.rand_like(t))
            assert not torch.allclose(model(x), expected)
        loaded = load_file(str(path))
        assert set(loaded) == set(original) and {"normalize.mean", "normalize.std"} <= set(loaded)
        model.load_state_dict(loaded, strict=True)
        with torch.no_grad():
            assert torch.equal(model(x), expected)
    finally:
        model.load_state_dict(original)


@pytest.mark.parametrize("name", [n for n in MODELS if n != BIG])
@pytest.mark.parametrize("size", [8, 28, 33])
def test_any_input_size_and_train_mode(name: str, size: int) -> None:
    model = build(name, 1).train()
    x = torch.rand(2, 1, size, size)
    assert model(x).shape == (2, 7)
    assert model.features(x).shape == (2, FEATURE_DIM[name])


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(FeatgapError) as info:
        create("nope")
    message = str(info.value)
    assert "nope" in message
    assert all(name in message for name in MODELS)


def test_wrong_mean_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="mean/std"):
        create("resnet18", in_channels=1, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))


def test_wideresnet_is_general() -> None:
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=2, num_classes=3, in_channels=1).eval()
    assert model.feature_dim == 128 and len(model.stage1) == len(model.stage3) == 1
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="6n"):
        WideResNet(depth=33, widen_factor=10)


def test_smallcnn_skips_its_identity_pool_bit_for_bit():
    """At 28×28 the 7×7 adaptive pool is the identity: skipping it (AvgPoolTo) must give exactly the
    logits and input gradients of nn.AdaptiveAvgPool2d, and at 32×32 it must still pool."""
    import torch.nn.functional as F

    from featgap.models.smallcnn import AvgPoolTo, avg_pool_to

    t = torch.randn(2, 32, 7, 7)
    assert avg_pool_to(t, 7) is t  # passed through, no kernel call
    t8 = torch.randn(2, 32, 8, 8)
    assert torch.equal(avg_pool_to(t8, 7), F.adaptive_avg_pool2d(t8, 7))

    torch.manual_seed(0)
    new = create("smallcnn", 10, 1)
    assert isinstance(new.pool[0], AvgPoolTo) and isinstance(new.pool[0], nn.AdaptiveAvgPool2d)
    old = create("smallcnn", 10, 1)
    old.load_state_dict(new.state_dict())
    old.pool[0] = nn.AdaptiveAvgPool2d(7)
    for size in (28, 32):
        x = torch.rand(16, 1, size, size)
        grads = []
        for model in (new, old):
            xi = x.clone().requires_grad_(True)
            logits = model(xi)
            F.cross_entropy(logits, torch.arange(16) % 10).backward()
            grads.append((logits.detach(), xi.grad))
        assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1]), size
