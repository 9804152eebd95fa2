"""Tests of featgap.attacks: PGD and FGSM keep their promises (ball, pixel range, model mode,
no parameter gradients), match an analytic answer on a linear model, and actually attack a
briefly trained smallcnn; the TRADES objective is a KL divergence.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featgap import data
from featgap.attacks import cross_entropy, default_step_size, fgsm, margin, pgd, trades_kl
from featgap.models import create
from conftest import ModeRecorder


pytestmark = pytest.mark.usefixtures("one_thread")


def run_pgd(model, x, y, **kw):
    return pgd(model, x, y, steps=kw.pop("steps", 5), **kw)


def run_fgsm(model, x, y, **kw):
    return fgsm(model, x, y, **kw)


ATTACKS = {"pgd": run_pgd, "fgsm": run_fgsm}
EPS = {"linf": 0.1, "l2": 1.0}


def small_net() -> nn.Sequential:
    """A small CNN with batch norm and dropout, so that train and eval mode really differ."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), ModeRecorder(),
                         nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))


def batch(b: int = 6, side: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images in [0, 1] with saturated pixels (exact 0 and 1) to exercise the clipping."""
    x = torch.rand(b, 1, side, side)
    x[:, :, :2] = 0.0
    x[:, :, -2:] = 1.0
    return x, torch.randint(0, 5, (b,))


# ----------------------------------------------------------------------------- threat model

@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("name", ATTACKS)
def test_linf_result_in_ball_and_pixel_range(name, random_start):
    model = small_net().eval()
    x, y = batch()
    eps = EPS["linf"]
    x_adv = ATTACKS[name](model, x, y, eps=eps, norm="linf", random_start=random_start)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    # it did move (a no-op attack would pass the bounds trivially)
    assert (x_adv - x).abs().max().item() > eps / 2


@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("name", ATTACKS)
def test_l2_result_in_ball_and_pixel_range(name, random_start):
    model = small_net().eval()
    x, y = batch()
    eps = EPS["l2"]
    x_adv = ATTACKS[name](model, x, y, eps=eps, norm="l2", random_start=random_start)
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert norms.max().item() <= eps + 1e-5
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert norms.min().item() > eps / 4  # every sample was moved


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_returns_x_exactly(name, norm):
    model = small_net().eval()
    x, y = batch()
    x_adv = ATTACKS[name](model, x, y, eps=0.0, norm=norm, random_start=True)
    assert torch.equal(x_adv, x)


def test_pgd_with_restarts_and_eps_zero_returns_x_exactly():
    model = small_net().eval()
    x, y = batch()
    assert torch.equal(pgd(model, x, y, eps=0.0, steps=3, restarts=3), x)


def test_l2_pgd_with_many_steps_stays_in_ball():
    """Large steps overshoot the ball every iteration: the projection must bring them back."""
    model = small_net().eval()
    x, y = batch()
    x_adv = pgd(model, x, y, eps=0.5, norm="l2", steps=20, step_size=2.0)
    assert (x_adv - x).flatten(1).norm(dim=1).max().item() <= 0.5 + 1e-5


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_alone_fills_the_ball(norm):
    """steps=0: the result is the random start itself, inside the ball, centred on x."""
    model = small_net().eval()
    x = torch.full((64, 1, 8, 8), 0.5)  # far from the pixel bounds: no clipping
    y = torch.zeros(64, dtype=torch.long)
    eps = 0.1 if norm == "linf" else 1.0
    delta = pgd(model, x, y, eps=eps, steps=0, norm=norm) - x
    if norm == "linf":
        assert delta.abs().max().item() <= eps + 1e-6
        assert delta.max().item() > 0.95 * eps and delta.min().item() < -0.95 * eps
        assert abs(delta.mean().item()) < 0.01 * eps
    else:
        norms = delta.flatten(1).norm(dim=1)
        assert norms.max().item() <= eps + 1e-5 and norms.min().item() > 0.8 * eps  # radius ε·U^(1/64)
        assert delta.mean(0).abs().max().item() < 0.1  # random directions
    assert torch.equal(pgd(model, x, y, eps=eps, steps=0, norm=norm, random_start=False), x)


# ----------------------------------------------------------------------------- model mode

def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("setup", ["train", "eval", "train_with_eval_submodule"])
@pytest.mark.parametrize("name", ATTACKS)
def test_mode_is_restored_and_attack_runs_in_eval(name, setup):
    model = small_net()
    model.train(setup != "eval")
    if setup == "train_with_eval_submodule":
        model[1].eval()  # the batch norm, frozen by the user
    before = _modes(model)
    bn_stats = (model[1].running_mean.clone(), model[1].running_var.clone(), model[1].num_batches_tracked.clone())
    x, y = batch()
    ATTACKS[name](model, x, y, eps=0.1, random_start=True)
    assert _modes(model) == before
    if setup == "train_with_eval_submodule":
        assert model.training and not model[1].training
    recorder = model[3]
    assert recorder.seen and not any(recorder.seen)  # every forward pass of the attack ran in eval mode
    # eval mode: the batch-norm running statistics were not touched
    for before_t, after_t in zip(bn_stats, (model[1].running_mean, model[1].running_var,
                                            model[1].num_batches_tracked)):
        assert torch.equal(before_t, after_t)


def test_mode_is_restored_when_the_model_raises():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Flatten(), Boom()).train()
    x, y = batch()
    with pytest.raises(RuntimeError, match="boom"):
        pgd(model, x, y, eps=0.1, steps=2)
    assert all(_modes(model))


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("name", ATTACKS)
def test_parameter_grads_stay_none(name):
    model = small_net().train()
    x, y = batch()
    x.requires_grad_(True)
    ATTACKS[name](model, x, y, eps=0.1)
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None


@pytest.mark.parametrize("name", ATTACKS)
def test_existing_parameter_grads_are_unchanged(name):
    model = small_net().eval()
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert any(g.abs().sum() > 0 for g in grads)
    ATTACKS[name](model, x, y, eps=0.1)
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)


def test_attack_works_inside_no_grad():
    """Evaluation code may call an attack under ``torch.no_grad()``: it still takes gradients."""
    model = small_net().eval()
    x, y = batch()
    with torch.no_grad():
        x_adv = pgd(model, x, y, eps=0.1, steps=3, random_start=False)
    assert (x_adv - x).abs().max().item() > 0.05


# ----------------------------------------------------------------------------- analytic case

def linear_model(d: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """logits = W·flatten(x), 2 classes, with |W₁ − W₀| ≥ 0.05 in every pixel (no ties in sign)."""
    g = torch.Generator().manual_seed(seed)
    w0 = 0.1 * torch.randn(d, generator=g)
    direction = torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0)
    w1 = w0 + direction * (0.05 + 0.1 * torch.rand(d, generator=g))
    lin = nn.Linear(d, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([w0, w1]))
    return nn.Sequential(nn.Flatten(), lin).eval(), torch.stack([w0, w1])


@pytest.mark.parametrize("attack", ["pgd", "pgd_custom_step", "fgsm"])
def test_linf_matches_analytic_answer_on_linear_model(attack):
    b, side, eps = 8, 4, 0.1
    model, w = linear_model(side * side)
    x = torch.rand(b, 1, side, side)
    x[0, 0, 0, :] = torch.tensor([0.0, 1.0, 0.03, 0.97])  # near the edges: clipping matters
    y = torch.arange(b) % 2
    if attack == "pgd":
        x_adv = pgd(model, x, y, eps=eps, steps=10, random_start=False)
    elif attack == "pgd_custom_step":
        x_adv = pgd(model, x, y, eps=eps, steps=7, step_size=0.03, random_start=False)
    else:
        x_adv = fgsm(model, x, y, eps=eps)
    # the margin W_y·x − W_{1−y}·x falls fastest along sign(W_{1−y} − W_y), in every pixel
    sign = torch.sign(w[1 - y] - w[y]).view_as(x)
    expected = (x + eps * sign).clamp(0.0, 1.0)
    assert torch.equal(x_adv, expected)
    margin = lambda z: (model(z).gather(1, y[:, None]) - model(z).gather(1, 1 - y[:, None])).squeeze(1)  # noqa: E731
    assert (margin(x_adv) < margin(x)).all()


@pytest.mark.parametrize("attack", ["pgd", "fgsm"])
def test_l2_matches_analytic_answer_on_linear_model(attack):
    """Away from the pixel bounds, the L2 answer is x + ε·u with u the unit vector W_{1−y} − W_y."""
    b, side, eps = 6, 4, 0.5
    model, w = linear_model(side * side, seed=1)
    x = 0.3 + 0.4 * torch.rand(b, 1, side, side)  # every pixel ≥ 0.3 from the bounds; ε = 0.5 in L2
    y = torch.arange(b) % 2
    if attack == "pgd":
        x_adv = pgd(model, x, y, eps=eps, norm="l2", steps=10, random_start=False)
    else:
        x_adv = fgsm(model, x, y, eps=eps, norm="l2")
    u = w[1 - y] - w[y]
    expected = x + eps * (u / u.norm(dim=1, keepdim=True)).view_as(x)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-6)


def test_l2_projection_is_identity_inside_the_ball():
    """Three steps of 0.1 inside an L2 ball of radius 5 stay where the steps put them."""
    model, w = linear_model(16, seed=2)
    x = 0.4 + 0.2 * torch.rand(4, 1, 4, 4)
    y = torch.tensor([0, 1, 0, 1])
    x_adv = pgd(model, x, y, eps=5.0, norm="l2", steps=3, step_size=0.1, random_start=False)
    u = w[1 - y] - w[y]
    expected = x + 0.3 * (u / u.norm(dim=1, keepdim=True)).view_as(x)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- a real model

@pytest.fixture(scope="module")
def trained(briefly_trained):
    """smallcnn after ~1 s of Adam on 1,000 real digits; attacked on 200 held-out training digits."""
    train = data.load("mnist5k", "train")
    rest, held = train.split_off(0.05, seed=1)
    torch.manual_seed(0)
    model = create("smallcnn", 10, 1, train.info.mean, train.info.std)
    x, y = rest.stratified_subset(1000, seed=0).tensors()
    perm = torch.randperm(len(y))  # the subset is sorted by class: shuffle it
    x, y = x[perm], y[perm]
    briefly_trained(model, x, y)
    model.eval()
    xt, yt = held.tensors()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.75, f"the quick training should reach >75% clean accuracy, got {acc:.2%}"
    return model, xt, yt


def _fooled(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def test_pgd_raises_cross_entropy_on_trained_model(trained):
    model, x, y = trained
    x_adv = pgd(model, x, y, eps=0.1, steps=10)
    with torch.no_grad():
        clean, adv = cross_entropy(model, x, y), cross_entropy(model, x_adv, y)
    assert adv.mean() > clean.mean() + 0.5
    assert (adv > clean).float().mean() > 0.95
    assert _fooled(model, x_adv, y).float().mean() > _fooled(model, x, y).float().mean()


def test_more_steps_do_not_lower_success_rate_much(trained):
    model, x, y = trained
    rates = {}
    for steps in (5, 20):
        torch.manual_seed(1)
        rates[steps] = _fooled(model, pgd(model, x, y, eps=0.1, steps=steps), y).float().mean().item()
    assert rates[20] >= rates[5] - 0.05, rates
    # and a larger ball is at least as successful
    torch.manual_seed(1)
    big = _fooled(model, pgd(model, x, y, eps=0.2, steps=20), y).float().mean().item()
    assert big >= rates[20] - 0.02 and big > 0.9


def test_restarts_never_lose_to_their_first_run(trained):
    """With the same seed the first run of ``restarts=3`` *is* the ``restarts=1`` run, so per
    sample: fooled stays fooled, and otherwise the kept objective is at least as high."""
    model, x, y = trained
    kw = dict(eps=0.05, steps=2)  # a weak attack, so that restarts have something to add
    torch.manual_seed(3)
    one = pgd(model, x, y, restarts=1, **kw)
    torch.manual_seed(3)
    three = pgd(model, x, y, restarts=3, **kw)
    f1, f3 = _fooled(model, one, y), _fooled(model, three, y)
    assert f3.float().mean() >= f1.float().mean()
    assert not (f1 & ~f3).any()
    with torch.no_grad():
        ce1, ce3 = cross_entropy(model, one, y), cross_entropy(model, three, y)
    neither = ~f1 & ~f3
    assert (ce3[neither] >= ce1[neither]).all()
    assert ((three - x).abs().max() <= 0.05 + 1e-6) and three.min() >= 0 and three.max() <= 1


def test_restarts_keep_the_best_run_per_sample(trained):
    """Restarts draw their random starts one after another from the global RNG, so three seeded
    single runs reproduce them: per sample, the result fools the model iff some run did, and
    where none did it has the highest cross-entropy of the three."""
    model, x, y = trained
    kw = dict(eps=0.05, steps=2)
    torch.manual_seed(3)
    runs = [pgd(model, x, y, **kw) for _ in range(3)]
    torch.manual_seed(3)
    best = pgd(model, x, y, restarts=3, **kw)
    fooled = torch.stack([_fooled(model, r, y) for r in runs])
    assert torch.equal(_fooled(model, best, y), fooled.any(0))
    with torch.no_grad():
        ce = torch.stack([cross_entropy(model, r, y) for r in runs])
        ce_best = cross_entropy(model, best, y)
    none = ~fooled.any(0)
    assert torch.equal(ce_best[none], ce[:, none].amax(0))
    # the setting is weak enough that the later runs matter (else this test would prove little)
    assert (fooled.any(0) & ~fooled[0]).any()
    assert (ce[1:, none].amax(0) > ce[0, none]).any()


def threshold_model(d: int) -> nn.Module:
    """2 classes: logit₀ = 0, logit₁ = 10·(Σx − d/2). At x = ½ (label 0) a perturbation fools
    the model iff it raises the pixel sum, so about half of all random starts fool it."""
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(d), 10 * torch.ones(d)]))
        lin.bias.copy_(torch.tensor([0.0, -10 * d / 2]))
    return nn.Sequential(nn.Flatten(), lin).eval()


def _starts(model, x, y, objective, n=3):
    """With steps=0 a run is its random start: three seeded single runs = the restarts' runs."""
    torch.manual_seed(5)
    runs = torch.stack([pgd(model, x, y, eps=0.1, steps=0, objective=objective) for _ in range(n)])
    torch.manual_seed(5)
    best = pgd(model, x, y, eps=0.1, steps=0, restarts=n, objective=objective)
    return runs, best


def test_restarts_prefer_a_fooling_run_to_a_higher_objective():
    """The objective here (the true-class margin) is *highest* for the runs that do not fool the
    model; the ranking must still put fooling first."""
    model = threshold_model(16)
    x, y = torch.full((64, 1, 4, 4), 0.5), torch.zeros(64, dtype=torch.long)

    def margin(m, z, t):
        logits = m(z)
        return logits[:, 0] - logits[:, 1]

    runs, best = _starts(model, x, y, margin)
    fooled = torch.stack([_fooled(model, r, y) for r in runs])
    assert (fooled.any(0) & ~fooled.all(0)).sum() >= 10  # many samples with fooling and non-fooling runs
    assert torch.equal(_fooled(model, best, y), fooled.any(0))
    none = ~fooled.any(0)
    with torch.no_grad():
        assert torch.equal(margin(model, best, y)[none], torch.stack([margin(model, r, y) for r in runs])[:, none].amax(0))


def test_restarts_keep_the_higher_objective_among_fooling_runs():
    model = threshold_model(16)
    x, y = torch.full((64, 1, 4, 4), 0.5), torch.zeros(64, dtype=torch.long)

    def pixel_sum(m, z, t):  # small values; higher iff further past the decision threshold
        return 1e-3 * z.flatten(1).sum(1)

    runs, best = _starts(model, x, y, pixel_sum)
    with torch.no_grad():
        sums = runs.flatten(2).sum(2)  # (runs, samples)
    assert ((sums > 8).sum(0) >= 2).sum() >= 5  # samples with two or more fooling runs
    # fooling ⇔ higher pixel sum, and the objective grows with it: the best run is the top sum
    expected = runs[sums.argmax(0), torch.arange(64)]
    assert torch.equal(best, expected)


# ----------------------------------------------------------------------------- saturated logits

def saturated(model: nn.Module, scale: float = 1e4) -> nn.Module:
    """A copy of a featgap model with its linear head scaled: the same predictions, but a softmax
    saturated to exactly one-hot in float32 (what AFA's large encoder features can cause)."""
    import copy

    out = copy.deepcopy(model)
    with torch.no_grad():
        out.head.weight.mul_(scale)
        out.head.bias.mul_(scale)
    return out


def test_margin_is_positive_exactly_when_misclassified():
    torch.manual_seed(0)
    model = small_net().eval()
    x, y = batch(32)
    with torch.no_grad():
        logits = model(x).double()
        value = margin(model, x, y)
    other = logits.clone()
    other[torch.arange(32), y] = -float("inf")
    expected = other.max(1).values - logits[torch.arange(32), y]  # independent, in float64
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(value > 0, logits.argmax(1) != y)


def test_cross_entropy_pgd_is_masked_by_saturated_logits_and_margin_pgd_is_not(trained):
    """Scaling the logits changes no prediction, so a robust-accuracy measure must not change.
    CE-PGD's does (zero gradients: it stands still); the margin attack's does not."""
    model, x, y = trained
    x, y = x[:100], y[:100]
    strong = saturated(model)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(cross_entropy(strong, x, y).sum(), x)
    x = x.detach()
    assert (grad.flatten(1).abs().sum(1) == 0).float().mean() > 0.5  # most samples: exactly zero gradient
    fooled = {}
    for name, m in (("plain", model), ("saturated", strong)):
        for objective in (cross_entropy, margin):
            torch.manual_seed(2)
            fooled[name, objective.__name__] = _fooled(model, pgd(m, x, y, eps=0.15, steps=10, objective=objective),
                                                       y).float().mean().item()
    assert fooled["plain", "cross_entropy"] > 0.5 and fooled["plain", "margin"] > 0.5  # both attacks work
    assert fooled["saturated", "cross_entropy"] < fooled["plain", "cross_entropy"] - 0.3  # masked
    assert abs(fooled["saturated", "margin"] - fooled["plain", "margin"]) <= 0.03  # not fooled by the scale


def test_epoch_monitor_counts_the_margin_attack(trained):
    """The trainer's monitor reports the CE-only number and the worst of CE and margin PGD."""
    from featgap.train.monitor import EpochMonitor

    model = trained[0]
    held = data.load("mnist5k", "train").split_off(0.05, seed=1)[1]
    monitor = EpochMonitor(held, n=100, eps=0.15, steps=10, norm="linf", device=torch.device("cpu"))
    plain, masked = monitor(model, epoch=0), monitor(saturated(model), epoch=0)
    assert plain["monitor_pgd_acc"] <= plain["monitor_pgd_ce_acc"] <= plain["monitor_clean_acc"]
    assert masked["monitor_clean_acc"] == plain["monitor_clean_acc"]
    assert masked["monitor_pgd_ce_acc"] > masked["monitor_pgd_acc"] + 30  # the masking shows as a gap
    assert abs(masked["monitor_pgd_acc"] - plain["monitor_pgd_acc"]) <= 5


# ----------------------------------------------------------------------------- objectives, misc

def test_trades_kl_is_a_nonnegative_kl_and_zero_at_x():
    model = small_net().eval()
    x, y = batch()
    with torch.no_grad():
        natural = model(x)
        objective = trades_kl(natural)
        at_x = objective(model, x, y)
        x_far = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
        far = objective(model, x_far, y)
        other_y = objective(model, x_far, (y + 1) % 5)
        # independent KL(p_nat ‖ p_adv) in float64
        p = F.softmax(natural.double(), 1)
        q = F.softmax(model(x_far).double(), 1)
        expected = (p * (p.log() - q.log())).sum(1)
    assert at_x.shape == (len(x),)
    torch.testing.assert_close(at_x, torch.zeros_like(at_x), rtol=0, atol=1e-6)
    assert (far >= 0).all() and (far > 1e-4).all()
    torch.testing.assert_close(far.double(), expected, rtol=1e-4, atol=1e-6)
    assert torch.equal(far, other_y)  # TRADES' objective ignores the label


def test_pgd_on_trades_kl_increases_the_divergence():
    model = small_net().eval()
    x, y = batch()
    with torch.no_grad():
        objective = trades_kl(model(x))
    x_adv = pgd(model, x, y, eps=0.1, steps=5, objective=objective)
    with torch.no_grad():
        assert objective(model, x_adv, y).mean() > objective(model, x, y).mean() + 1e-3


@pytest.mark.parametrize("norm", ["l1", "inf", "L-inf"])
def test_unknown_norm_raises(norm):
    model = small_net().eval()
    x, y = batch()
    with pytest.raises(ValueError, match="norm"):
        pgd(model, x, y, eps=0.1, norm=norm)
    with pytest.raises(ValueError, match="norm"):
        fgsm(model, x, y, eps=0.1, norm=norm)


def test_negative_eps_or_steps_raise():
    model = small_net().eval()
    x, y = batch()
    with pytest.raises(ValueError):
        pgd(model, x, y, eps=-0.1)
    with pytest.raises(ValueError):
        pgd(model, x, y, eps=0.1, steps=-1)


def test_default_step_size():
    assert default_step_size(0.3, 10) == 0.075
    assert default_step_size(8 / 255, 20) == pytest.approx(2.5 * 8 / 255 / 20)
    assert default_step_size(0.3, 0) == pytest.approx(0.75)  # no division by zero
