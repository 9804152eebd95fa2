"""Tests of featgap.probes.geometry: every measure against an independent NumPy/SciPy computation
on small random inputs, plus hand-computed cases; local Lipschitzness against exact values and
true upper bounds on linear and tanh maps, and on a featgap model (finite, mode- and grad-safe)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import minimize
from scipy.spatial.distance import cdist, pdist
from scipy.special import logsumexp
from torch import nn

from featgap.attacks import lipschitz_ratio, pgd_best
from featgap.errors import FeatgapError
from featgap.models import create
from featgap.probes import COLUMNS
from featgap.probes.geometry import (alignment, centroid_misalignment, class_centroids, knn_accuracy,
                                     linear_probe_accuracy, local_lipschitz, uniformity)

pytestmark = pytest.mark.usefixtures("one_thread")


def unit(a: np.ndarray) -> np.ndarray:
    n = np.sqrt((a ** 2).sum(1, keepdims=True))
    return a / np.maximum(n, 1e-12)


def blobs(rng: np.random.Generator, n: int, k: int, d: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """n points around k random centres (unit Gaussian noise, centres scaled by spread)."""
    centres = spread * rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n)
    return centres[y] + rng.normal(size=(n, d)), y


# ----------------------------------------------------------------------------- class_centroids

def test_class_centroids_match_numpy_loop():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 7)).astype(np.float32)
    y = np.arange(50) % 4
    rng.shuffle(y)
    got = class_centroids(torch.from_numpy(f), torch.from_numpy(y))
    want = np.stack([f[y == k].astype(np.float64).mean(0) for k in range(4)])
    assert got.shape == (4, 7) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
    got64 = class_centroids(f.astype(np.float64), y)  # NumPy in, float64 in → float64 out
    assert got64.dtype == torch.float64
    np.testing.assert_allclose(got64.numpy(), want, rtol=1e-12)


def test_class_centroids_hand_computed():
    c = class_centroids([[0.0, 0.0], [2.0, 4.0], [10.0, 1.0]], [0, 0, 1])
    assert c.tolist() == [[1.0, 2.0], [10.0, 1.0]]


def test_class_centroids_reject_an_empty_class():
    f, y = np.zeros((3, 2)), np.array([0, 2, 2])
    with pytest.raises(FeatgapError, match="class 1 has no sample"):
        class_centroids(f, y)
    with pytest.raises(FeatgapError, match="class 3 has no sample"):
        class_centroids(f, np.array([0, 1, 2]), num_classes=4)
    with pytest.raises(FeatgapError, match="num_classes is 2"):
        class_centroids(f, y, num_classes=2)
    with pytest.raises(FeatgapError, match="integer class indices"):
        class_centroids(f, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(FeatgapError, match="1-D array of 3"):
        class_centroids(f, np.array([0, 1]))
    with pytest.raises(FeatgapError, match=r"\(N, D\)"):
        class_centroids(np.zeros(3), np.array([0, 1, 1]))
    with pytest.raises(FeatgapError, match="NaN"):
        class_centroids(np.array([[0.0], [math.nan]]), np.array([0, 1]))


# ----------------------------------------------------------------------------- centroid_misalignment

def numpy_misaligned(f: np.ndarray, y: np.ndarray, c: np.ndarray) -> np.ndarray:
    out = np.zeros(len(f), dtype=bool)
    for i in range(len(f)):
        own = np.linalg.norm(f[i] - c[y[i]])
        out[i] = any(np.linalg.norm(f[i] - c[k]) < own for k in range(len(c)) if k != y[i])
    return out


def test_misalignment_two_classes_on_a_line():
    # centroids 1 and 11; adversarial features: 7 is nearer 11 (misaligned), 6 is exactly halfway
    # (a tie: aligned), 12 stays, 3 crossed over to class 0's side (misaligned)
    f_nat = [[0.0], [2.0], [10.0], [12.0]]
    f_adv = [[7.0], [6.0], [12.0], [3.0]]
    out = centroid_misalignment(f_nat, f_adv, [0, 0, 1, 1])
    assert out["nat"] == 0.0 and out["adv"] == 0.5
    assert out["nat_misaligned"].tolist() == [False] * 4
    assert out["adv_misaligned"].tolist() == [True, False, False, True]
    # with given centroids (here: swapped, 11 for class 0 and 1 for class 1) every natural sample
    # is misaligned, and of the adversarial ones only 12 (class 1, nearer 11 than 1); 6 is a tie
    out = centroid_misalignment(f_nat, f_adv, [0, 0, 1, 1], centroids=[[11.0], [1.0]])
    assert out["nat"] == 1.0 and out["adv"] == 0.25
    assert out["adv_misaligned"].tolist() == [False, False, True, False]


@pytest.mark.parametrize("given", [False, True])
def test_misalignment_matches_numpy_loop(given):
    rng = np.random.default_rng(1)
    f_nat, y = blobs(rng, 80, 4, 6, spread=1.0)  # overlapping classes: some natural samples misaligned
    f_adv = f_nat + rng.normal(scale=1.5, size=f_nat.shape)
    f_nat, f_adv = f_nat.astype(np.float32).astype(np.float64), f_adv.astype(np.float32).astype(np.float64)
    c = rng.normal(size=(4, 6)) if given else np.stack([f_nat[y == k].mean(0) for k in range(4)])
    out = centroid_misalignment(torch.from_numpy(f_nat).float(), torch.from_numpy(f_adv).float(),
                                torch.from_numpy(y), centroids=c if given else None)
    want_nat, want_adv = numpy_misaligned(f_nat, y, c), numpy_misaligned(f_adv, y, c)
    assert out["nat_misaligned"].dtype == torch.bool and out["nat_misaligned"].shape == (80,)
    np.testing.assert_array_equal(out["nat_misaligned"].numpy(), want_nat)
    np.testing.assert_array_equal(out["adv_misaligned"].numpy(), want_adv)
    assert out["nat"] == pytest.approx(want_nat.mean()) and out["adv"] == pytest.approx(want_adv.mean())
    assert 0 < out["nat"] < 1 and 0 < out["adv"] < 1
    if not given:  # the noise carries features away from their own class's centroid
        assert out["nat"] < out["adv"]
    assert isinstance(out["nat"], float) and isinstance(out["adv"], float)


def test_misalignment_single_class_and_errors():
    out = centroid_misalignment([[0.0], [5.0]], [[9.0], [-9.0]], [0, 0])
    assert out["nat"] == 0.0 and out["adv"] == 0.0  # no other class to be nearer to
    with pytest.raises(FeatgapError, match="same shape"):
        centroid_misalignment(np.zeros((3, 2)), np.zeros((3, 3)), [0, 1, 1])
    with pytest.raises(FeatgapError, match="only 2 centroids"):
        centroid_misalignment(np.zeros((3, 2)), np.zeros((3, 2)), [0, 1, 2], centroids=np.zeros((2, 2)))
    with pytest.raises(FeatgapError, match="3 dimensions"):
        centroid_misalignment(np.zeros((3, 2)), np.zeros((3, 2)), [0, 1, 1], centroids=np.zeros((2, 3)))
    with pytest.raises(FeatgapError, match="empty"):
        centroid_misalignment(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, dtype=int))


# ----------------------------------------------------------------------------- alignment

@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_numpy_loop(alpha):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 5))
    b = a + rng.normal(scale=0.7, size=a.shape)
    want = np.mean([np.linalg.norm(a[i] / np.linalg.norm(a[i]) - b[i] / np.linalg.norm(b[i])) ** alpha
                    for i in range(30)])
    got = alignment(torch.from_numpy(a).float(), b, alpha=alpha)  # torch and NumPy inputs mixed
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-5)


def test_alignment_hand_computed():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(20, 8))
    assert alignment(a, a.copy()) == 0.0
    assert alignment(a, a * rng.uniform(0.1, 10, size=(20, 1))) == pytest.approx(0.0, abs=1e-12)  # length ignored
    assert alignment([[1.0, 0.0]], [[0.0, 3.0]]) == pytest.approx(2.0)  # orthogonal: ‖ẑ − ẑ′‖² = 2
    assert alignment([[2.0, 0.0]], [[-1.0, 0.0]], alpha=1.0) == pytest.approx(2.0)  # antipodal: distance 2
    assert alignment([[2.0, 0.0]], [[-1.0, 0.0]], alpha=3.0) == pytest.approx(8.0)
    with pytest.raises(FeatgapError, match="alpha"):
        alignment(a, a, alpha=0.0)


# ----------------------------------------------------------------------------- uniformity

@pytest.mark.parametrize("t", [0.5, 2.0])
def test_uniformity_matches_scipy(t):
    rng = np.random.default_rng(4)
    f = rng.normal(size=(40, 6))
    want = logsumexp(-t * pdist(unit(f), "sqeuclidean")) - math.log(40 * 39 / 2)
    got = uniformity(torch.from_numpy(f).float(), t=t)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-5)
    assert -4 * t <= got <= 0


def test_uniformity_hand_computed():
    assert uniformity([[1.0, 0.0], [-3.0, 0.0]], t=2.0) == pytest.approx(-8.0)  # log exp(−t·4) = −4t
    assert uniformity([[0.0, 2.0], [0.0, -1.0]], t=1.0) == pytest.approx(-4.0)
    assert uniformity([[0.0, 2.0], [0.0, -1.0]], t=1000.0) == pytest.approx(-4000.0)  # no underflow to log 0
    assert uniformity(np.ones((5, 3))) == 0.0  # all on one point: every pair at distance 0
    # three unit vectors at 120°: every squared distance is 3
    z = [[math.cos(a), math.sin(a)] for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    assert uniformity(z, t=1.0) == pytest.approx(-3.0)


def test_uniformity_subsamples_reproducibly():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(60, 4))
    full = logsumexp(-2 * pdist(unit(f), "sqeuclidean")) - math.log(60 * 59 / 2)
    assert uniformity(f, max_samples=None) == pytest.approx(full, rel=1e-10)
    assert uniformity(f, max_samples=60) == pytest.approx(full, rel=1e-10)
    sub = uniformity(f, max_samples=20)
    assert sub == uniformity(f, max_samples=20) and sub != uniformity(f, max_samples=20, seed=1)
    assert sub != pytest.approx(full, rel=1e-10) and sub == pytest.approx(full, abs=0.5)
    with pytest.raises(FeatgapError, match="at least 2"):
        uniformity([[1.0, 0.0]])
    with pytest.raises(FeatgapError, match="max_samples"):
        uniformity(f, max_samples=1)


# ----------------------------------------------------------------------------- knn_accuracy

def numpy_knn_accuracy(xtr, ytr, xte, yte, k: int, normalize: bool) -> float:
    if normalize:
        xtr, xte = unit(xtr), unit(xte)
    nearest = np.argsort(cdist(xte, xtr), axis=1, kind="stable")[:, :k]
    pred = np.array([np.bincount(ytr[row]).argmax() for row in nearest])  # argmax: smallest label wins ties
    return float((pred == yte).mean())


@pytest.mark.parametrize("k", [1, 4, 7])
@pytest.mark.parametrize("normalize", [True, False])
def test_knn_matches_numpy(k, normalize):
    rng = np.random.default_rng(6)
    x, y = blobs(rng, 160, 3, 5, spread=1.0)
    x[:, 0] *= rng.uniform(0.2, 5.0, size=160)  # uneven lengths, so normalising changes neighbours
    got = knn_accuracy(torch.from_numpy(x[:100]).float(), torch.from_numpy(y[:100]), x[100:], y[100:], k,
                       normalize=normalize)
    want = numpy_knn_accuracy(x[:100].astype(np.float32).astype(np.float64), y[:100], x[100:], y[100:], k, normalize)
    assert isinstance(got, float)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0.4 < got < 1.0  # neither trivial nor hopeless


def test_knn_hand_computed():
    # class 0 at [1, 0.1], class 1 at [10, 5]; the test point [0.5, 0.2] is close to class 0 in
    # Euclidean distance (0.51 against 10.6) but closer in angle to class 1 (21.8° vs 26.6° and 5.7°)
    train, labels, test = [[1.0, 0.1], [10.0, 5.0]], [0, 1], [[0.5, 0.2]]
    assert knn_accuracy(train, labels, test, [0], k=1, normalize=False) == 1.0
    assert knn_accuracy(train, labels, test, [0], k=1, normalize=True) == 0.0
    # k=3: the nearest neighbour (1.1) is of class 1, but two of the three nearest are of class 0
    train, labels = [[0.0], [1.1], [1.3], [5.0], [6.0]], [0, 1, 0, 1, 1]
    assert knn_accuracy(train, labels, [[1.0]], [1], k=1, normalize=False) == 1.0
    assert knn_accuracy(train, labels, [[1.0]], [0], k=3, normalize=False) == 1.0
    # a tied vote (k=2, one neighbour of each class) goes to the smaller label
    assert knn_accuracy([[0.0], [1.0]], [3, 2], [[0.4], [0.6]], [2, 2], k=2, normalize=False) == 1.0
    with pytest.raises(FeatgapError, match="only 2 training features"):
        knn_accuracy([[0.0], [1.0]], [0, 1], [[0.5]], [0], k=3)
    with pytest.raises(FeatgapError, match="dimensions"):
        knn_accuracy([[0.0], [1.0]], [0, 1], [[0.5, 1.0]], [0], k=1)


# ----------------------------------------------------------------------------- linear_probe_accuracy

def scipy_probe_accuracy(xtr, ytr, xte, yte, C: float) -> float:
    """Standardise with train statistics, then minimise C·Σ cross-entropy + ½‖W‖² (intercept free)."""
    mu, sd = xtr.mean(0), xtr.std(0)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    k, d = ytr.max() + 1, xtr.shape[1]
    onehot = np.eye(k)[ytr]

    def loss(theta):
        w, b = theta[:k * d].reshape(k, d), theta[k * d:]
        z = xtr @ w.T + b
        lse = logsumexp(z, axis=1)
        p = np.exp(z - lse[:, None])
        value = C * (lse - (z * onehot).sum(1)).sum() + 0.5 * (w ** 2).sum()
        gz = C * (p - onehot)
        return value, np.concatenate([(gz.T @ xtr + w).ravel(), gz.sum(0)])

    res = minimize(loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 5000})
    w, b = res.x[:k * d].reshape(k, d), res.x[k * d:]
    return float(((xte @ w.T + b).argmax(1) == yte).mean())


def test_linear_probe_matches_scipy_optimum():
    rng = np.random.default_rng(7)
    x, y = blobs(rng, 300, 3, 4, spread=0.8)
    x = x * np.array([1.0, 10.0, 0.1, 3.0])  # uneven scales: the standardisation matters
    for C in (0.05, 1.0):
        got = linear_probe_accuracy(x[:150], y[:150], torch.from_numpy(x[150:]), torch.from_numpy(y[150:]), C=C)
        want = scipy_probe_accuracy(x[:150], y[:150], x[150:], y[150:], C)
        assert isinstance(got, float)
        assert got == pytest.approx(want, abs=1.5 / 150)  # same convex optimum: at most one test point flips
        assert 0.5 < got < 1.0


def test_linear_probe_separable_and_random_labels():
    rng = np.random.default_rng(8)
    x, y = blobs(rng, 200, 3, 6, spread=20.0)  # centres far apart relative to the unit noise
    assert linear_probe_accuracy(x[:100], y[:100], x[100:], y[100:]) == 1.0
    x = rng.normal(size=(800, 10))
    y = rng.integers(0, 4, size=800)  # labels unrelated to the features: chance is 1/4
    assert linear_probe_accuracy(x[:200], y[:200], x[200:], y[200:]) == pytest.approx(0.25, abs=0.08)
    with pytest.raises(FeatgapError, match="single class"):
        linear_probe_accuracy(x[:10], np.zeros(10, dtype=int), x[10:20], y[10:20])
    with pytest.raises(FeatgapError, match="C must be"):
        linear_probe_accuracy(x[:10], y[:10], x[10:20], y[10:20], C=0.0)


# ----------------------------------------------------------------------------- local_lipschitz

def linear_model(w: torch.Tensor) -> nn.Sequential:
    """f(x) = W·flatten(x) + b, a plain nn.Sequential (no layer_names): probed as layer "1"."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(w.shape[1], w.shape[0]))
    with torch.no_grad():
        model[1].weight.copy_(w)
        model[1].bias.uniform_(-1, 1)
    return model


def tanh_model(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray) -> nn.Sequential:
    model = nn.Sequential(nn.Flatten(), nn.Linear(w1.shape[1], w1.shape[0]), nn.Tanh(),
                          nn.Linear(w1.shape[0], w2.shape[0], bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(w1))
        model[1].bias.copy_(torch.from_numpy(b1))
        model[3].weight.copy_(torch.from_numpy(w2))
    return model


def lipschitz(model: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """The ``lipschitz`` column of :func:`local_lipschitz` for one layer, as a tensor (labels are all 0)."""
    df = local_lipschitz(model, x, torch.zeros(len(x), dtype=torch.long), **kwargs)
    assert list(df.columns) == ["sample", "label", "layer", "lipschitz"] and df["layer"].nunique() <= 1
    return torch.from_numpy(df["lipschitz"].to_numpy().copy())


def test_linear_one_row_reaches_the_l1_norm_of_w():
    # max over the L∞ ball of |w·δ| / ‖δ‖∞ is ‖w‖₁, at δ = ε·sign(w); x = 0.5, ε = 0.1 keeps [0, 1] from binding
    w = torch.randn(1, 64)
    x = torch.full((16, 1, 8, 8), 0.5)
    lip = lipschitz(linear_model(w), x, eps=0.1, layers="1", seed=0)
    exact = w.abs().sum().item()
    assert lip.shape == (16,) and lip.dtype == torch.float32
    assert (lip >= 0.99 * exact).all(), (lip / exact).min()
    assert (lip <= exact * (1 + 1e-5)).all()
    # L2 ball: max |w·δ| / ‖δ‖₂ = ‖w‖₂ (Cauchy–Schwarz)
    lip2 = lipschitz(linear_model(w), x, eps=0.5, layers="1", norm="l2", seed=0)
    exact2 = w.norm().item()
    assert (lip2 >= 0.99 * exact2).all() and (lip2 <= exact2 * (1 + 1e-5)).all()


def test_linear_many_rows_never_exceed_the_exact_maximum():
    # max over the ball of ‖Wδ‖₁/‖δ‖∞ = max over sign vectors s of ‖W s‖₁ (a convex function peaks at a vertex)
    w = torch.randn(3, 10, dtype=torch.float64)
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=10)))
    exact = np.abs(signs @ w.numpy().T).sum(1).max()
    x = torch.rand(24, 10, dtype=torch.float64)  # anywhere in [0, 1]: clamping only shrinks the ball
    lip = lipschitz(linear_model(w).double(), x, eps=0.2, layers="1", seed=1)
    assert (lip <= exact * (1 + 1e-6)).all()
    assert (lip > 0.3 * exact).all()


def test_tanh_network_matches_its_jacobian_and_respects_the_lipschitz_bound():
    rng = np.random.default_rng(9)
    w1, b1, w2 = rng.normal(size=(16, 64)) / 4, rng.normal(size=16), rng.normal(size=(1, 16))
    model = tanh_model(w1, b1, w2)
    x = rng.uniform(0.2, 0.8, size=(12, 64))
    # small ε: f is nearly linear, f(x') − f(x) ≈ J δ with J = w2·diag(1 − tanh²(w1 x + b1))·w1, and
    # the maximum of |J δ|/‖δ‖∞ over the ball is ‖J‖₁
    jac_l1 = np.array([np.abs((w2 * (1 - np.tanh(w1 @ xi + b1) ** 2)) @ w1).sum() for xi in x])
    lip = lipschitz(model, torch.from_numpy(x), eps=1e-3, layers="3", seed=0).double().numpy()
    np.testing.assert_allclose(lip, jac_l1, rtol=0.02)
    # any ε: |tanh a − tanh a'| ≤ |a − a'|, so ‖f(x) − f(x')‖₁ ≤ Σ(|w2|·|w1|)·‖x − x'‖∞
    bound = (np.abs(w2) @ np.abs(w1)).sum()
    lip = lipschitz(model, torch.from_numpy(x), eps=0.3, layers="3", steps=5, seed=0).double().numpy()
    assert (lip <= bound).all() and (lip > 0).all()


def test_smallcnn_is_finite_positive_and_leaves_model_untouched(recording_smallcnn):
    model, seen = recording_smallcnn
    model.train()
    model.stage1.eval()
    before = [m.training for m in model.modules()]
    model.head.weight.grad = torch.ones_like(model.head.weight)  # an existing .grad must stay as it is
    x = torch.rand(6, 1, 28, 28)
    rng_state = torch.get_rng_state()
    lip = lipschitz(model, x, eps=0.1, steps=3, batch_size=4, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_state)  # a seed leaves torch's global RNG alone
    assert lip.shape == (6,) and torch.isfinite(lip).all() and (lip > 0).all()
    assert [m.training for m in model.modules()] == before
    assert seen and not any(seen)
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "head.weight")
    assert torch.equal(lipschitz(model, x, eps=0.1, steps=3, batch_size=4, seed=0), lip)  # reproducible
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(lipschitz(model, u8, eps=0.1, steps=3, seed=0),
                          lipschitz(model, u8.float() / 255, eps=0.1, steps=3, seed=0))
    for layer, pool in [("logits", "avg"), ("stage1", "flatten"), ("stage2", "avg")]:
        other = lipschitz(model, x[:2], eps=0.1, steps=2, layers=layer, pool=pool, seed=0)
        assert other.shape == (2,) and torch.isfinite(other).all() and (other > 0).all(), layer
    # several layers: one ascent each, each seeded afresh, so a layer's rows do not depend on the others
    y = torch.arange(6)
    both = local_lipschitz(model, x, y, eps=0.1, steps=3, batch_size=4, seed=0, layers=["stage2", "pool"])
    assert list(both["layer"]) == ["stage2"] * 6 + ["pool"] * 6 and list(both["label"]) == list(range(6)) * 2
    np.testing.assert_array_equal(both[both["layer"] == "pool"]["lipschitz"].to_numpy(), lip.numpy())
    assert set(both.columns) <= set(COLUMNS)


def test_local_lipschitz_rejects_bad_input():
    model = create("smallcnn", 10, 1)
    x = torch.rand(2, 1, 28, 28)
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(FeatgapError, match="eps"):
        local_lipschitz(model, x, y, eps=0.0)
    with pytest.raises(FeatgapError, match="give eps"):
        local_lipschitz(model, x, y)
    with pytest.raises(FeatgapError, match="unknown norm"):
        local_lipschitz(model, x, y, eps=0.1, norm="l1")
    with pytest.raises(FeatgapError, match=r"\[0, 1\]"):
        local_lipschitz(model, x * 2, y, eps=0.1)
    with pytest.raises(FeatgapError, match="layer name"):
        local_lipschitz(model, x, y, eps=0.1, layers=["stage1", 2])
    with pytest.raises(FeatgapError, match="unknown layer"):
        local_lipschitz(model, x, y, eps=0.1, layers="nope")
    with pytest.raises(FeatgapError, match="labels"):
        local_lipschitz(model, x, y[:1], eps=0.1)
    with pytest.raises(FeatgapError, match="shape"):
        local_lipschitz(model, x, y, x[:1])
    with pytest.raises(FeatgapError, match="layer_names"):
        local_lipschitz(linear_model(torch.ones(1, 4)), torch.rand(2, 4), y, eps=0.1)
    empty = local_lipschitz(model, x[:0], y[:0], eps=0.1)
    assert len(empty) == 0 and list(empty.columns) == ["sample", "label", "layer", "lipschitz"]


def test_local_lipschitz_at_given_points_is_the_ratio_there():
    # f(x) = Wx + b: the ratio at x' is ‖W(x' − x)‖₁ / ‖x' − x‖, written out in NumPy
    rng = np.random.default_rng(5)
    w = rng.normal(size=(3, 10))
    model = linear_model(torch.from_numpy(w).float())
    x = rng.uniform(0.2, 0.8, size=(8, 10))
    x_adv = np.clip(x + rng.uniform(-0.1, 0.1, size=x.shape), 0, 1)
    d = x_adv - x
    want_linf = np.abs(d @ w.T).sum(1) / np.abs(d).max(1)
    want_l2 = np.abs(d @ w.T).sum(1) / np.linalg.norm(d, axis=1)
    y = torch.arange(8) % 3
    xt, xa = torch.from_numpy(x).float(), torch.from_numpy(x_adv).float()
    got = local_lipschitz(model, xt, y, xa, layers="1")
    np.testing.assert_allclose(got["lipschitz"].to_numpy(), want_linf, rtol=1e-4)
    got = local_lipschitz(model, xt, y, xa, layers="1", norm="l2")
    np.testing.assert_allclose(got["lipschitz"].to_numpy(), want_l2, rtol=1e-4)
    # the ascent's own best points give back its values
    f = lambda t: model(t)  # noqa: E731
    with torch.no_grad():
        f_nat = f(xt)
    x_best, best = pgd_best(f, xt, None, objective=lipschitz_ratio(xt, f_nat), eps=0.1, steps=5,
                            generator=torch.Generator().manual_seed(0))
    assert (x_best - xt).abs().max() <= 0.1 + 1e-6 and x_best.min() >= 0 and x_best.max() <= 1
    again = local_lipschitz(model, xt, y, x_best, layers="1")["lipschitz"].to_numpy()
    np.testing.assert_allclose(again, best.numpy(), rtol=1e-5)
    probe = local_lipschitz(model, xt, y, layers="1", eps=0.1, steps=5, seed=0, batch_size=8)["lipschitz"].to_numpy()
    np.testing.assert_array_equal(probe, best.numpy())


def test_geometry_table_agrees_with_the_single_measures():
    from featgap.models import create
    from featgap.probes import extract_features, geometry_table

    torch.manual_seed(4)
    model = create("smallcnn", 10, 1).eval()
    x, y = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    xr, yr = torch.rand(60, 1, 28, 28), torch.arange(60) % 10
    t = geometry_table(model, x, y, x_adv, layers=["stage2", "pool"], reference=(xr, yr), k=3)
    assert list(t["layer"]) == ["stage2", "pool"]
    f = extract_features(model, x, ["pool"])["pool"]
    fa = extract_features(model, x_adv, ["pool"])["pool"]
    fr = extract_features(model, xr, ["pool"])["pool"]
    assert isinstance(t, pd.DataFrame) and set(t.columns) <= set(COLUMNS)
    row = t[t["layer"] == "pool"].to_dict("records")[0]
    mis = centroid_misalignment(f, fa, y, class_centroids(fr, yr))
    assert row["misaligned_nat"] == pytest.approx(mis["nat"]) and row["misaligned_adv"] == pytest.approx(mis["adv"])
    assert row["alignment"] == pytest.approx(alignment(f, fa))
    assert row["uniformity_adv"] == pytest.approx(uniformity(fa))
    assert row["knn_adv"] == pytest.approx(knn_accuracy(fr, yr, fa, y, 3))
    assert row["linear_nat"] == pytest.approx(linear_probe_accuracy(fr, yr, f, y))
    plain = geometry_table(model, x, y, x_adv, layers="pool")  # no reference: no classifiers
    assert "knn_nat" not in plain and plain["misaligned_nat"][0] == pytest.approx(
        centroid_misalignment(f, fa, y)["nat"])
    # without x_adv the probe attacks with PGD itself
    from featgap.probes import adversarial_examples

    made = adversarial_examples(model, x, y, eps=0.1, steps=2, seed=0)
    pd.testing.assert_frame_equal(geometry_table(model, x, y, layers="pool", eps=0.1, steps=2),
                                  geometry_table(model, x, y, made, layers="pool"))
