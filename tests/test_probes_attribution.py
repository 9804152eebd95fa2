"""Tests of featgap.probes.attribution: the three methods against hand-computed maps of a linear
model and against integrated gradients' completeness on a CNN; the four map measures against
NumPy/SciPy and hand cases; ``compare_attributions`` on real digits and real PGD examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from featgap import data
from featgap.attacks import pgd
from featgap.errors import FeatgapError
from featgap.models import create
from featgap.probes import COLUMNS, adversarial_examples
from featgap.probes.attribution import (
    ATTRIBUTION_DISTANCES,
    ATTRIBUTION_METHODS,
    AttributionComparison,
    _average_ranks,
    attribute,
    compare_attributions,
    compare_maps,
    heatmap,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_method_and_measure_names():
    assert ATTRIBUTION_METHODS == ("integrated_gradients", "saliency", "input_x_gradient")
    assert ATTRIBUTION_DISTANCES == ("cosine", "l2", "topk_overlap", "spearman")


# ----------------------------------------------------------------------------- a linear model: maps by hand

@pytest.fixture(scope="module")
def linear():
    """f(x) = W·flatten(x) + b on 2×3×4 inputs, 3 classes; and 5 random inputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 3))
    x = torch.rand(5, 2, 3, 4)
    return model, x, model[1].weight.detach().clone()


def w_rows(w: torch.Tensor, t) -> torch.Tensor:
    return w[torch.as_tensor(t)].view(-1, 2, 3, 4)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_linear_saliency_is_abs_weight_row(linear, batch_size):
    model, x, w = linear
    t = [0, 1, 2, 0, 1]
    got = attribute(model, x, t, method="saliency", batch_size=batch_size)
    assert got.shape == x.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, w_rows(w, t).abs(), rtol=0, atol=0)


@pytest.mark.parametrize("batch_size", [1, 5, 64])  # fewer images per pass than n_steps, and more
def test_linear_integrated_gradients_is_x_times_weight(linear, batch_size):
    model, x, w = linear
    got = attribute(model, x, 2, batch_size=batch_size)
    want = x * w_rows(w, 2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # completeness: the map splits f_t(x) − f_t(0) among the inputs
    with torch.no_grad():
        delta = model(x)[:, 2] - model(torch.zeros_like(x))[:, 2]
    torch.testing.assert_close(got.flatten(1).sum(1), delta, rtol=1e-5, atol=1e-5)


def test_linear_input_x_gradient_and_baselines(linear):
    model, x, w = linear
    t = torch.tensor([1, 1, 0, 2, 2])
    torch.testing.assert_close(attribute(model, x, t, method="input_x_gradient"), x * w_rows(w, t))
    # a constant baseline (a grey image) and a per-input tensor baseline: (x − x̄) ⊙ W_t
    torch.testing.assert_close(attribute(model, x, t, baseline=0.5), (x - 0.5) * w_rows(w, t), rtol=1e-5, atol=1e-6)
    ref = torch.rand(2, 3, 4)
    torch.testing.assert_close(attribute(model, x, t, baseline=ref), (x - ref) * w_rows(w, t), rtol=1e-5, atol=1e-6)
    refs = torch.rand_like(x)
    torch.testing.assert_close(attribute(model, x, t, baseline=refs), (x - refs) * w_rows(w, t), rtol=1e-5, atol=1e-6)


def test_uint8_images_are_scaled_and_input_is_left_alone(linear):
    model, _, w = linear
    xb = torch.randint(0, 256, (3, 2, 3, 4), dtype=torch.uint8)
    torch.testing.assert_close(attribute(model, xb, 1), (xb.float() / 255) * w_rows(w, 1), rtol=1e-5, atol=1e-6)
    x = torch.rand(3, 2, 3, 4)
    attribute(model, x, 0, method="saliency")
    assert not x.requires_grad and x.grad is None
    assert len(attribute(model, x[:0], 0)) == 0


# ----------------------------------------------------------------------------- a real CNN

@pytest.fixture(scope="module")
def trained(briefly_trained):
    """smallcnn after ~1 s of Adam on 600 real digits; one test digit per class and its PGD example
    (ε 0.3, 5 steps)."""
    train = data.load("mnist5k", "train")
    torch.manual_seed(0)
    model = create("smallcnn", 10, 1, train.info.mean, train.info.std)
    x, y = train.stratified_subset(600, seed=0).tensors()
    perm = torch.randperm(len(y))
    briefly_trained(model, x[perm], y[perm], epochs=2)
    model.zero_grad(set_to_none=True)
    model.eval()
    test = data.load("mnist5k", "test")
    xt, yt = test.stratified_subset(10, seed=0).tensors()
    assert sorted(yt.tolist()) == list(range(10))
    assert xt.dtype == torch.float32 and 0 <= xt.min() and xt.max() <= 1 and yt.dtype == torch.long
    x_adv = pgd(model, xt, yt, eps=0.3, steps=5)
    return model, xt, yt, x_adv


def test_integrated_gradients_completeness_on_a_cnn(trained):
    model, x, y, x_adv = trained
    for inputs in (x, x_adv):
        maps = attribute(model, inputs, y, n_steps=64)
        with torch.no_grad():
            delta = (model(inputs) - model(torch.zeros_like(inputs))).gather(1, y[:, None])[:, 0]
        assert delta.abs().max() > 5  # a trained model: the check is not about tiny numbers
        # Gauss–Legendre quadrature of a piecewise-linear (ReLU) path: close, not exact
        np.testing.assert_allclose(maps.flatten(1).sum(1).numpy(), delta.numpy(), rtol=0.01, atol=0.05)


def test_compare_attributions_on_real_pgd_examples(trained):
    model, x, y, x_adv = trained
    model.train()
    model.stage1.eval()  # a mixed mode must come back as it was
    before = [m.training for m in model.modules()]
    cmp = compare_attributions(model, x, y, x_adv, n_steps=16)
    assert [m.training for m in model.modules()] == before
    assert all(p.grad is None for p in model.parameters())
    model.eval()

    assert isinstance(cmp, AttributionComparison) and len(cmp) == 10
    assert cmp.methods == ATTRIBUTION_METHODS and cmp.target_rule == "label"
    assert torch.equal(cmp.target, y) and torch.equal(cmp.labels, y)
    with torch.no_grad():
        assert torch.equal(cmp.pred_nat, model(x).argmax(1)) and torch.equal(cmp.pred_adv, model(x_adv).argmax(1))
    assert (cmp.pred_adv != y).sum() >= 5  # the attack is real
    for m in ATTRIBUTION_METHODS:
        for maps in (cmp.natural[m], cmp.adversarial[m]):
            assert maps.shape == x.shape and maps.dtype == torch.float32 and torch.isfinite(maps).all()
        assert cmp.heatmap(m).shape == cmp.heatmap(m, "adversarial").shape == (10, 28, 28)
        assert set(cmp.distances(m)) == set(ATTRIBUTION_DISTANCES)
        for k, v in cmp.distances(m).items():
            assert v.shape == (10,) and torch.isfinite(v).all(), (m, k)
        d = cmp.distances(m)
        # the table holds the same numbers, one row per sample × method, and the measures of compare_maps
        rows = cmp.table[cmp.table["method"] == m]
        assert list(rows["sample"]) == list(range(10)) and list(rows["label"]) == y.tolist()
        assert list(rows["adv_pred"]) == cmp.pred_adv.tolist() and list(rows["target"]) == y.tolist()
        want = compare_maps(cmp.natural[m], cmp.adversarial[m])
        for k in ATTRIBUTION_DISTANCES:
            np.testing.assert_array_equal(rows[k].to_numpy(), want[k].numpy())
        assert ((0 <= d["cosine"]) & (d["cosine"] <= 2)).all() and ((0 <= d["l2"]) & (d["l2"] <= 2)).all()
        assert ((0 <= d["topk_overlap"]) & (d["topk_overlap"] <= 1)).all()
        assert ((-1 <= d["spearman"]) & (d["spearman"] <= 1)).all()
        assert d["cosine"].mean() > 0.01  # the attack moved the maps
        # the maps are those of attribute(), for the same class on both inputs
        torch.testing.assert_close(cmp.natural[m], attribute(model, x, y, method=m, n_steps=16))
    assert isinstance(cmp.table, pd.DataFrame) and len(cmp.table) == 30 and set(cmp.table.columns) <= set(COLUMNS)
    means = cmp.mean()
    assert list(means.index) == list(ATTRIBUTION_METHODS) and list(means.columns) == list(ATTRIBUTION_DISTANCES)
    assert means.loc["saliency", "l2"] == pytest.approx(float(cmp.distances("saliency")["l2"].mean()))
    fooled = cmp.pred_adv != y
    assert not means.equals(cmp.mean(fooled)) or fooled.all()
    # without x_adv the probe attacks with PGD itself
    made = adversarial_examples(model, x, y, eps=0.3, steps=3, seed=0)
    own = compare_attributions(model, x, y, eps=0.3, steps=3, methods="saliency")
    pd.testing.assert_frame_equal(own.table, compare_attributions(model, x, y, made, methods="saliency").table)


def test_compare_attributions_target_rules_and_identical_inputs(trained):
    model, x, y, x_adv = trained
    cmp = compare_attributions(model, x, None, x_adv, methods="saliency", target="adv_pred")
    assert cmp.methods == ("saliency",) and cmp.labels is None and torch.equal(cmp.target, cmp.pred_adv)
    assert "label" not in cmp.table.columns
    cmp = compare_attributions(model, x, y, x_adv, methods=["saliency"], target="pred")
    assert torch.equal(cmp.target, cmp.pred_nat) and cmp.target_rule == "pred"
    cmp = compare_attributions(model, x, None, x_adv, methods=["saliency"], target=3)
    assert torch.equal(cmp.target, torch.full((10,), 3)) and cmp.target_rule == "given"
    # the same input twice: the same maps, so the measures say "unchanged"
    same = compare_attributions(model, x, y, x.clone(), methods=("integrated_gradients", "saliency"), n_steps=8)
    for m in same.methods:
        d = same.distances(m)
        assert torch.equal(d["cosine"], torch.zeros(10)) and torch.equal(d["l2"], torch.zeros(10))
        assert torch.equal(d["topk_overlap"], torch.ones(10))
        torch.testing.assert_close(d["spearman"], torch.ones(10))


def test_attribute_runs_in_eval_mode_and_leaves_grads_alone(recording_smallcnn):
    model, seen = recording_smallcnn
    model.train()
    x = torch.rand(3, 1, 28, 28)
    for method in ATTRIBUTION_METHODS:
        attribute(model, x, 1, method=method, n_steps=4)
    assert model.training and all(m.training for m in model.modules())
    assert seen and not any(seen)
    assert all(p.grad is None for p in model.parameters())
    # gradients a training step already holds are not touched either
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    with torch.no_grad():  # and a caller's no_grad block does not stop the attribution
        maps = attribute(model, x, 1, n_steps=4)
    assert maps.abs().sum() > 0
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


# ----------------------------------------------------------------------------- the measures

def numpy_measures(a: np.ndarray, b: np.ndarray, topk: float = 0.1) -> dict[str, np.ndarray]:
    """The four measures of the module docstring, written out in float64 NumPy (SciPy for Spearman)."""
    fa, fb = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    cos = (fa * fb).sum(1) / (np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1))
    ua = fa / np.abs(fa).sum(1, keepdims=True)
    ub = fb / np.abs(fb).sum(1, keepdims=True)
    if a.ndim == 4:
        ia, ib = np.abs(a).sum(1).reshape(len(a), -1), np.abs(b).sum(1).reshape(len(b), -1)
    else:
        ia, ib = np.abs(fa), np.abs(fb)
    k = max(1, math.ceil(topk * ia.shape[1]))
    overlap = np.array([len(set(np.argsort(-p, kind="stable")[:k]) & set(np.argsort(-q, kind="stable")[:k])) / k
                        for p, q in zip(ia, ib)])
    rho = np.array([stats.spearmanr(p, q).statistic for p, q in zip(ia, ib)])
    return {"cosine": 1 - cos, "l2": np.linalg.norm(ua - ub, axis=1), "topk_overlap": overlap, "spearman": rho}


@pytest.mark.parametrize("shape,topk", [((6, 3, 5, 7), 0.1), ((6, 1, 8, 8), 0.25), ((4, 40), 0.05)])
def test_compare_maps_matches_numpy(shape, topk):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shape).astype(np.float32)
    b = (a + rng.normal(scale=0.8, size=shape)).astype(np.float32)
    got = compare_maps(torch.from_numpy(a), torch.from_numpy(b), topk=topk)
    want = numpy_measures(a, b, topk)
    assert list(got) == list(ATTRIBUTION_DISTANCES)
    for k in ATTRIBUTION_DISTANCES:
        assert got[k].shape == (shape[0],) and got[k].dtype == torch.float32, k
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert 0 < got["topk_overlap"].mean() < 1


def test_compare_maps_with_ties_matches_numpy():
    """Maps with many exact zeros (integrated gradients on a black background): average ranks, stable top-k."""
    rng = np.random.default_rng(1)
    a = np.maximum(rng.normal(size=(5, 1, 6, 6)), 0).astype(np.float32)
    b = np.maximum(rng.normal(size=(5, 1, 6, 6)), 0).astype(np.float32)
    a[:, :, :2] = b[:, :, :2] = 1.0  # tied non-zero values too
    assert ((a == 0).sum(axis=(1, 2, 3)) > 36 - 29).all()  # the top 80 % (29 of 36) reach into the tied zeros
    got = compare_maps(torch.from_numpy(a), torch.from_numpy(b), topk=0.8)
    want = numpy_measures(a, b, 0.8)
    for k in ATTRIBUTION_DISTANCES:
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_average_ranks_match_scipy():
    rng = np.random.default_rng(2)
    v = rng.integers(0, 4, size=(7, 30)).astype(np.float64)
    want = np.stack([stats.rankdata(row) for row in v])
    np.testing.assert_array_equal(_average_ranks(torch.from_numpy(v)).numpy(), want)


def measures(a, b, topk=0.1) -> dict[str, list[float]]:
    got = compare_maps(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32), topk=topk)
    return {k: v.tolist() for k, v in got.items()}


def test_hand_identical_and_rescaled_maps():
    a = [[0.5, -1.0, 2.0, 0.25, -3.0, 1.5, 0.0, 4.0, -0.75, 1.0]]
    for b in (a, [[3 * v for v in a[0]]]):  # the same map, and the same map with a 3× larger logit
        g = measures(a, b)
        assert g["cosine"] == [0.0] and g["topk_overlap"] == [1.0]
        assert g["l2"][0] == pytest.approx(0.0, abs=1e-7) and g["spearman"][0] == pytest.approx(1.0)


def test_hand_disjoint_supports():
    a = [[3.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    b = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 5.0]]
    g = measures(a, b, topk=0.2)  # the top 2 of 10 entries
    assert g["topk_overlap"] == [0.0] and g["cosine"] == [1.0]
    # L1-normalised: [0.6, 0.4, 0…] vs [0…, 1/6, 5/6]
    assert g["l2"][0] == pytest.approx(math.sqrt(0.6 ** 2 + 0.4 ** 2 + (1 / 6) ** 2 + (5 / 6) ** 2), rel=1e-6)
    assert g["spearman"][0] < 0


def test_hand_sign_flipped_maps():
    a = [[1.0, -2.0, 0.5, 4.0]]
    g = measures(a, [[-v for v in a[0]]], topk=0.5)
    assert g["cosine"][0] == pytest.approx(2.0, abs=1e-6)  # evidence for the class became evidence against it
    assert g["l2"][0] == pytest.approx(2 * math.sqrt(1 + 4 + 0.25 + 16) / 7.5, rel=1e-6)
    assert g["topk_overlap"] == [1.0] and g["spearman"][0] == pytest.approx(1.0)  # |A| is unchanged


def test_hand_degenerate_maps_documented_behaviour():
    g = measures([[0.0, 0.0, 0.0, 0.0]], [[1.0, 2.0, 3.0, 4.0]], topk=0.5)
    assert g["cosine"] == [1.0] and g["spearman"] == [0.0]  # a zero map: cosine distance 1, no ranking
    assert g["l2"][0] == pytest.approx(math.sqrt(1 + 4 + 9 + 16) / 10, rel=1e-6)


def test_heatmap_sums_absolute_channels():
    maps = torch.tensor([[[[1.0, -2.0]], [[-3.0, 0.5]], [[0.0, 1.0]]]])  # (1, 3, 1, 2)
    assert heatmap(maps).tolist() == [[[4.0, 3.5]]]
    # the location measures of an RGB map see only the heatmap: swapping channels changes nothing
    a = torch.randn(2, 3, 4, 4)
    g = compare_maps(a, a[:, [2, 0, 1]])
    assert torch.equal(g["topk_overlap"], torch.ones(2)) and torch.allclose(g["spearman"], torch.ones(2))
    assert (g["cosine"] > 0.1).all()


# ----------------------------------------------------------------------------- bad input

def test_bad_input_is_a_one_line_featgap_error(linear, trained):
    lin, x, _ = linear
    model, xt, yt, x_adv = trained
    cases = [
        lambda: attribute(lin, x, 0, method="gradcam"),
        lambda: attribute(lin, x, 3),                           # 3 classes: 0..2
        lambda: attribute(lin, x, -1),
        lambda: attribute(lin, x, [0, 1]),                       # one target per sample
        lambda: attribute(lin, x, 0.5),
        lambda: attribute(lin, x, 0, method="saliency", baseline=0.0),
        lambda: attribute(lin, x, 0, baseline=torch.zeros(2, 3)),
        lambda: attribute(lin, x, 0, n_steps=0),
        lambda: attribute(lin, x, 0, batch_size=0),
        lambda: attribute(lin, x.numpy(), 0),
        lambda: compare_attributions(model, xt, yt, x_adv, methods="gradcam"),
        lambda: compare_attributions(model, xt, yt, x_adv, methods=()),
        lambda: compare_attributions(model, xt, yt, x_adv[:9]),
        lambda: compare_attributions(model, xt, yt, x_adv, target=10),
        lambda: compare_attributions(model, xt, yt[:9], x_adv),
        lambda: compare_attributions(model, xt, yt + 10, x_adv),
        lambda: compare_attributions(model, xt, None, x_adv),    # target="label" needs y
        lambda: compare_attributions(model, xt, None),           # the attack needs y
        lambda: compare_attributions(model, xt, yt),             # ... and eps
        lambda: compare_attributions(model, xt, yt, x_adv, target="true"),
        lambda: compare_attributions(model, xt, yt, x_adv, topk=0.0),
        lambda: compare_maps(torch.zeros(2, 4), torch.zeros(2, 5)),
        lambda: heatmap(torch.zeros(2, 4)),
    ]
    for i, case in enumerate(cases):
        with pytest.raises(FeatgapError) as err:
            case()
        assert "\n" not in str(err.value), i
    cmp = compare_attributions(model, xt[:2], yt[:2], x_adv[:2], methods="saliency")
    with pytest.raises(FeatgapError):
        cmp.heatmap("integrated_gradients")
    with pytest.raises(FeatgapError):
        cmp.heatmap("saliency", "both")
