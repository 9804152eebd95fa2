"""Tests of the tensor-level feature-gap helpers: ``pairwise_gap`` against NumPy and hand-computed
values, and ``feature_gap`` on a real model (zero for identical inputs, batching-invariant,
mode-safe, the same numbers as ``gap_table``'s pooled-feature rows)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featgap.probes import GAP_METRICS, feature_gap, gap_table, pairwise_gap
from featgap.models import create


pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_gap(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """The four measures of the module docstring, written out in float64 NumPy."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    diff = a - b
    l2 = np.sqrt((diff ** 2).sum(1))
    cos = (a * b).sum(1) / (np.sqrt((a ** 2).sum(1)) * np.sqrt((b ** 2).sum(1)))
    return {"l2": l2, "linf": np.abs(diff).max(1), "cosine": 1.0 - cos, "rel_l2": l2 / np.sqrt((a ** 2).sum(1))}


def gap_of(a, b) -> dict[str, list[float]]:
    out = pairwise_gap(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    return {k: v.tolist() for k, v in out.items()}


# ----------------------------------------------------------------------------- pairwise_gap

@pytest.mark.parametrize("shape", [(32, 16), (8, 3, 4, 5)])
def test_pairwise_gap_matches_numpy(shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shape).astype(np.float32)
    b = (a + rng.normal(scale=0.5, size=shape)).astype(np.float32)
    got = pairwise_gap(torch.from_numpy(a), torch.from_numpy(b))
    want = numpy_gap(a, b)
    assert set(got) == set(GAP_METRICS) == {"l2", "linf", "cosine", "rel_l2"}
    for k in GAP_METRICS:
        assert got[k].shape == (shape[0],), k
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_pairwise_gap_matches_numpy_for_nonnegative_features():
    """ReLU features (as every featgap model produces): many exact zeros, cosine in [0, 1]."""
    rng = np.random.default_rng(1)
    a = np.maximum(rng.normal(size=(50, 64)), 0).astype(np.float32)
    b = np.maximum(rng.normal(size=(50, 64)), 0).astype(np.float32)
    got = pairwise_gap(torch.from_numpy(a), torch.from_numpy(b))
    want = numpy_gap(a, b)
    for k in GAP_METRICS:
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_pairwise_gap_is_not_symmetric_only_in_rel_l2():
    rng = np.random.default_rng(2)
    a, b = torch.from_numpy(rng.normal(size=(10, 8))), torch.from_numpy(3 * rng.normal(size=(10, 8)))
    ab, ba = pairwise_gap(a, b), pairwise_gap(b, a)
    for k in ("l2", "linf", "cosine"):
        torch.testing.assert_close(ab[k], ba[k])
    # rel_l2 divides by the *natural* features' norm
    torch.testing.assert_close(ab["rel_l2"] * a.norm(dim=1).float(), ba["rel_l2"] * b.norm(dim=1).float())
    assert not torch.allclose(ab["rel_l2"], ba["rel_l2"])


def test_hand_computed_orthogonal_unit_vectors():
    g = gap_of([[1.0, 0.0]], [[0.0, 1.0]])
    assert g["l2"][0] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert g["linf"] == [1.0]
    assert g["cosine"][0] == pytest.approx(1.0, abs=1e-7)
    assert g["rel_l2"][0] == pytest.approx(math.sqrt(2), rel=1e-6)


def test_hand_computed_three_four_five():
    g = gap_of([[3.0, 4.0]], [[0.0, 0.0]])
    assert g["l2"] == [5.0] and g["linf"] == [4.0] and g["rel_l2"] == [1.0]
    # documented behaviour: the cosine similarity with a zero vector is taken as 0, so the
    # cosine distance is 1 (torch's cosine_similarity divides by max(‖a‖‖b‖, eps))
    assert g["cosine"] == [1.0]


def test_hand_computed_opposite_and_parallel_vectors():
    g = gap_of([[1.0, 2.0], [1.0, 2.0]], [[-1.0, -2.0], [2.0, 4.0]])
    assert g["cosine"][0] == pytest.approx(2.0, abs=1e-6)  # opposite: 1 − (−1)
    assert g["cosine"][1] == pytest.approx(0.0, abs=1e-6)  # parallel: same direction, different length
    assert g["l2"][0] == pytest.approx(2 * math.sqrt(5), rel=1e-6)
    assert g["linf"] == [4.0, 2.0]
    assert g["rel_l2"][0] == pytest.approx(2.0, rel=1e-6) and g["rel_l2"][1] == pytest.approx(1.0, rel=1e-6)


def test_zero_natural_features_documented_behaviour():
    """Degenerate inputs, pinned so that a change is noticed: rel_l2 divides by max(‖f‖, 1e-12),
    and the cosine distance involving a zero vector is 1 — even between two zero vectors."""
    g = gap_of([[0.0, 0.0]], [[3.0, 4.0]])
    assert g["l2"] == [5.0] and g["cosine"] == [1.0]
    assert g["rel_l2"][0] == pytest.approx(5.0 / 1e-12, rel=1e-6)
    g = gap_of([[0.0, 0.0]], [[0.0, 0.0]])
    assert g["l2"] == [0.0] and g["linf"] == [0.0] and g["rel_l2"] == [0.0]
    assert g["cosine"] == [1.0]


def test_identical_vectors_give_zero_gap():
    rng = np.random.default_rng(3)
    a = torch.from_numpy(rng.normal(size=(200, 32)).astype(np.float32))
    g = pairwise_gap(a, a.clone())
    for k in ("l2", "linf", "rel_l2"):
        assert torch.equal(g[k], torch.zeros(200)), k
    assert torch.equal(g["cosine"], torch.zeros(200))  # clamped and exact for identical vectors
    g = gap_of([[1.0, 0.0], [0.25, -2.0]], [[1.0, 0.0], [0.25, -2.0]])
    assert g["l2"] == [0.0, 0.0] and g["linf"] == [0.0, 0.0] and g["rel_l2"] == [0.0, 0.0]
    assert g["cosine"] == pytest.approx([0.0, 0.0], abs=1e-6)  # [0.25, -2] gives 5.96e-8


def test_cosine_gap_of_identical_vectors_is_exactly_zero_and_never_negative():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(1000, 128)).astype(np.float32))
    cosine = pairwise_gap(a, a.clone())["cosine"]
    assert (cosine >= 0).all()
    assert torch.equal(cosine, torch.zeros(1000))


def test_pairwise_gap_accepts_float64_and_returns_float32():
    a = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    g = pairwise_gap(a, torch.zeros_like(a))
    assert all(v.dtype == torch.float32 for v in g.values())
    assert g["l2"].item() == 5.0


# ----------------------------------------------------------------------------- feature_gap

@pytest.fixture(scope="module")
def model_and_inputs():
    torch.manual_seed(0)
    model = create("smallcnn", 10, 1, (0.1307,), (0.3081,)).eval()
    x = torch.rand(12, 1, 28, 28)
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    return model, x, x_adv


def test_feature_gap_of_identical_inputs_is_zero(model_and_inputs):
    model, x, _ = model_and_inputs
    gap = feature_gap(model, x, x.clone())
    assert set(gap) == set(GAP_METRICS)
    for k in ("l2", "linf", "rel_l2"):
        assert torch.equal(gap[k], torch.zeros(len(x))), k
    assert gap["cosine"].abs().max().item() <= 1e-6


def test_feature_gap_matches_numpy_on_model_features(model_and_inputs):
    model, x, x_adv = model_and_inputs
    gap = feature_gap(model, x, x_adv, batch_size=5)  # 12 = 5 + 5 + 2: batches are concatenated in order
    with torch.no_grad():
        want = numpy_gap(model.features(x).numpy(), model.features(x_adv).numpy())
    for k in GAP_METRICS:
        assert gap[k].shape == (12,) and not gap[k].requires_grad
        np.testing.assert_allclose(gap[k].numpy(), want[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert (gap["l2"] > 0).all()


@pytest.mark.parametrize("setup", ["train", "eval", "train_with_eval_submodule"])
def test_feature_gap_leaves_mode_unchanged_and_runs_in_eval(setup, recording_smallcnn):
    model, seen = recording_smallcnn
    model.train(setup != "eval")
    if setup == "train_with_eval_submodule":
        model.stage1.eval()
    before = [m.training for m in model.modules()]
    x = torch.rand(4, 1, 28, 28)
    feature_gap(model, x, x)
    assert [m.training for m in model.modules()] == before
    assert seen and not any(seen)
    assert all(p.grad is None for p in model.parameters())


def test_feature_gap_equals_the_pool_rows_of_gap_table(model_and_inputs):
    model, x, x_adv = model_and_inputs
    gap = feature_gap(model, x, x_adv)
    rows = gap_table(model, x, torch.zeros(len(x), dtype=torch.long), x_adv, layers="pool")
    for k in GAP_METRICS:
        np.testing.assert_array_equal(rows[k].to_numpy(), gap[k].numpy(), err_msg=k)
    with pytest.raises(TypeError):
        feature_gap(model, x, x_adv, 5)  # batch_size is keyword-only, as in every probe
