"""Tests of AFD (featgap.methods.afd): the gradient routing of docs/methods/afd.md term by term, the confusing
target, folding D1 into the head, the components probe, and training from a natural run."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featgap import FeatgapError, runs
from featgap.methods import AttackSettings
from featgap.methods.afd import AFD, AFDStudent, confusing_target, export_plain, fold_disentangler, load_student
from featgap.models import create
from featgap.probes import component_norms, load_trajectory

pytestmark = pytest.mark.usefixtures("one_thread")


def student_and_method(seed: int = 0, perturb: bool = True) -> tuple[AFDStudent, AFD]:
    torch.manual_seed(seed)
    method = AFD(AttackSettings(steps=2), alpha=0.05, beta=0.25, gamma=25.0)
    student = method.start(create("smallcnn", 10, 1))
    if perturb:  # away from the identity, so that f1 ≠ f2 and every gradient is non-zero
        with torch.no_grad():
            student.intrinsic.weight.add_(0.05 * torch.randn_like(student.intrinsic.weight))
            student.confused.weight.add_(0.05 * torch.randn_like(student.confused.weight))
    return student, method


GROUPS = {"D1": lambda n: n.startswith("intrinsic."), "D2": lambda n: n.startswith("confused."),
          "head": lambda n: n.startswith("head."),
          "backbone": lambda n: not n.startswith(("intrinsic.", "confused.", "head."))}


def grads_by_group(student: AFDStudent, loss: torch.Tensor) -> dict[str, float]:
    """Total |gradient| that ``loss`` sends to each parameter group (0 when none arrives)."""
    named = list(student.named_parameters())
    grads = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    total = dict.fromkeys(GROUPS, 0.0)
    for (name, _), g in zip(named, grads):
        group = next(k for k, match in GROUPS.items() if match(name))
        total[group] += 0.0 if g is None else g.abs().sum().item()
    return total


def test_gradient_routing_matches_the_spec():
    student, method = student_and_method()
    student.train()
    x = torch.rand(16, 1, 28, 28)
    y = torch.arange(16) % 10
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    t = method.terms(student, x, x_adv, y)
    conf, elim, main = grads_by_group(student, t["conf"]), grads_by_group(student, t["elim"]), \
        grads_by_group(student, t["main"])
    # D2 learns only from the confused loss
    assert conf["D2"] > 0 and elim["D2"] == 0 and main["D2"] == 0
    # backbone and D1 learn from elimination and main, never from the confused branch
    for g in ("backbone", "D1"):
        assert conf[g] == 0 and elim[g] > 0 and main[g] > 0, g
    # the head learns from confused and main, not from elimination
    assert conf["head"] > 0 and main["head"] > 0 and elim["head"] == 0
    # one summed loss = the three routed terms
    named = [p for _, p in student.named_parameters()]
    total = torch.autograd.grad(t["conf"] + t["elim"] + t["main"], named, retain_graph=True)
    parts = [torch.autograd.grad(t[k], named, retain_graph=True, allow_unused=True) for k in ("conf", "elim", "main")]
    for i, g in enumerate(total):
        want = sum(p[i] if p[i] is not None else torch.zeros_like(g) for p in parts)
        torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-6)


def test_loss_terms_against_their_formulas():
    student, method = student_and_method(1)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    x_adv = (x + 0.05).clamp(0, 1)
    t = method.terms(student, x, x_adv, y)
    with torch.no_grad():
        z = student.features(x_adv)
        f1, f2 = z @ student.intrinsic.weight.T, z @ student.confused.weight.T
        w, b = student.head.weight, student.head.bias
        tz = method.teacher.features(x)
        yc = confusing_target(f1 @ w.T + b, y)
        cos = lambda a, c: ((a * c).sum(1) / (a.norm(dim=1) * c.norm(dim=1))).mean()  # noqa: E731
        assert t["conf"].item() == pytest.approx(0.05 * F.cross_entropy(f2 @ w.T + b, yc).item(), rel=1e-4)
        assert t["elim"].item() == pytest.approx(0.25 * cos(f1, f2).item(), rel=1e-4)
        assert t["main"].item() == pytest.approx(F.cross_entropy(f1 @ w.T + b, y).item() + 25 * (1 - cos(f1, tz).item()),
                                                 rel=1e-4)


def test_student_starts_as_the_natural_model_and_teacher_is_frozen():
    torch.manual_seed(0)
    natural = create("smallcnn", 10, 1).eval()
    x = torch.rand(4, 1, 28, 28)
    before = natural(x).detach()
    method = AFD(AttackSettings(steps=1))
    student = method.start(natural).eval()
    torch.testing.assert_close(student(x), before)  # D1 = D2 = identity
    c = student.components(x)
    torch.testing.assert_close(c["f1"], c["f2"])
    assert all(not p.requires_grad for p in method.teacher.parameters())
    assert set(student.state_dict()) == set(natural.state_dict()) | {"intrinsic.weight", "confused.weight"}
    assert student.layer_names == natural.layer_names
    # one training step changes the student, never the teacher
    teacher_before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    student.train()
    loss, metrics = method.loss(student, x, torch.arange(4), eps=0.3)
    loss.backward()
    opt.step()
    assert set(metrics) == {"adv_acc", "l_conf", "l_elim", "l_main", "conf_hit"}
    for k, v in method.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    assert not torch.allclose(student(x), before)


def test_confusing_target_by_hand():
    logits = torch.tensor([[3.0, 1.0, 2.0],    # predicts 0 = y → runner-up 2
                           [0.0, 5.0, 1.0],    # predicts 1 ≠ y=2 → 1
                           [1.0, 1.0, 0.0]])   # tie between y=0 and 1 → 1 (never y)
    y = torch.tensor([0, 2, 0])
    assert confusing_target(logits, y).tolist() == [2, 1, 1]
    rand = torch.randn(200, 10)
    yr = torch.randint(0, 10, (200,))
    assert (confusing_target(rand, yr) != yr).all()


def test_fold_gives_a_plain_model_with_the_same_logits():
    student, _ = student_and_method(2)
    student.eval()
    x = torch.rand(6, 1, 28, 28)
    plain = export_plain(student)
    assert type(plain).__name__ == "SmallCNN" and not hasattr(plain, "intrinsic")
    torch.testing.assert_close(plain(x), student(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain.features(x), student.features(x))
    state = fold_disentangler(student.state_dict())
    w = student.head.weight.detach().numpy().astype(np.float64) @ student.intrinsic.weight.detach().numpy()
    np.testing.assert_allclose(state["head.weight"].numpy(), w, rtol=1e-5, atol=1e-6)
    assert fold_disentangler(plain.state_dict()).keys() == plain.state_dict().keys()  # a plain state is untouched


def test_component_norms_against_a_manual_computation():
    student, _ = student_and_method(3)
    student.eval()
    x, y = torch.rand(5, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4])
    x_adv = (x + 0.1).clamp(0, 1)
    t = component_norms(student, x, y, x_adv, batch_size=2)
    assert len(t) == 10 and list(t["input"][:5]) == ["nat"] * 5
    assert list(t.columns) == ["sample", "label", "input", "f1_norm", "f2_norm", "cos_f1_f2", "y_conf", "conf_hit"]
    with torch.no_grad():
        c = student.components(x_adv)
    adv = t[t["input"] == "adv"]
    np.testing.assert_allclose(adv["f1_norm"], c["f1"].norm(dim=1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(adv["f2_norm"], c["f2"].norm(dim=1).numpy(), rtol=1e-5)
    f1, f2 = c["f1"].numpy().astype(np.float64), c["f2"].numpy().astype(np.float64)
    cos = (f1 * f2).sum(1) / (np.linalg.norm(f1, axis=1) * np.linalg.norm(f2, axis=1))
    np.testing.assert_allclose(adv["cos_f1_f2"], cos, rtol=1e-5)
    yc = confusing_target(c["logits1"], y)
    assert torch.equal(student.confused_target(c["logits1"], y), yc)  # what the probe asks the model for
    assert adv["y_conf"].tolist() == yc.tolist()
    assert adv["conf_hit"].tolist() == (c["logits2"].argmax(1) == yc).tolist()
    with pytest.raises(FeatgapError, match="AFD student"):
        component_norms(create("smallcnn", 10, 1), x, y, x_adv)


def test_afd_needs_a_natural_init(tmp_path):
    from featgap.train import TrainConfig, Trainer

    with pytest.raises(FeatgapError, match="--init"):
        Trainer(TrainConfig(method="afd", epochs=1), out=tmp_path / "a")
    with pytest.raises(FeatgapError, match="not found"):
        Trainer(TrainConfig(method="afd", epochs=1, init=str(tmp_path / "missing")), out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_afd_fine_tunes_a_natural_run_and_exports_a_plain_model(tmp_path):
    from featgap.train import TrainConfig, Trainer

    natural = tmp_path / "natural"
    Trainer(TrainConfig(epochs=1, lr=0.05, monitor_n=0), out=natural).fit()
    with pytest.raises(FeatgapError, match="holds a smallcnn model"):
        Trainer(TrainConfig(method="afd", model="preact_resnet18", init=str(natural), epochs=1), out=tmp_path / "x")
    afd = tmp_path / "afd"
    cfg = TrainConfig(method="afd", init=str(natural), epochs=1, lr=0.01, attack_steps=3, ema_decay=0.99,
                      monitor_n=50, probe_n=30, probe_layers=("pool",))
    exported = Trainer(cfg, out=afd).fit()
    assert type(exported).__name__ == "SmallCNN"
    loaded = runs.load(afd)
    student = load_student(str(afd))
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), exported(x))
    torch.testing.assert_close(student(x), loaded(x), rtol=1e-5, atol=1e-5)  # folded = unfolded
    # The checkpoint stores the exported plain weights next to the student's, so runs.load reads an
    # unfinished run the same way as any other (no AFD knowledge in featgap.runs).
    last = runs.read_tensors(afd / runs.LAST)
    assert "model.intrinsic.weight" in last and "export.model.head.weight" in last and "export.ema.head.weight" in last
    assert not any("intrinsic" in k or "confused" in k for k in last if k.startswith("export."))
    (afd / runs.FINAL).unlink()  # as if training had stopped after its last checkpoint
    unfinished = runs.load(afd)
    for k, v in exported.state_dict().items():
        assert torch.equal(unfinished.state_dict()[k], v), k
    raw = runs.load(afd, which="last").state_dict()  # the raw (non-EMA) student, folded
    model_state = {k[len("model."):]: v for k, v in last.items() if k.startswith("model.")}
    assert torch.equal(raw["head.weight"], fold_disentangler(model_state)["head.weight"])
    # a checkpoint from before the export keys: resumable and readable by the method, and runs.load says so
    runs.write_tensors(afd / runs.LAST, {k: v for k, v in last.items() if not k.startswith("export.")})
    with pytest.raises(FeatgapError, match="older featgap"):
        runs.load(afd)
    torch.testing.assert_close(load_student(str(afd))(x), student(x))
    record = json.loads((afd / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train_l_conf", "train_l_elim", "train_l_main", "train_conf_hit", "gap_linf"} <= set(record)
    t = load_trajectory(afd)
    comp = t[t["layer"] == "components"]
    assert set(comp["outcome"]) == {"nat", "adv"}
    assert set(comp["metric"]) == {"f1_norm", "f2_norm", "cos_f1_f2", "conf_hit"}
    with pytest.raises(FeatgapError, match="only afd runs"):
        load_student(str(natural))


# ---------------------------------------------------------------- update="two_step", the reference code's schedule
def one_step(update: str, seed: int = 0) -> tuple[AFDStudent, AFD, torch.optim.SGD, dict[str, torch.Tensor]]:
    """One training step on a fixed tiny batch with ``update``; the student and the method afterwards."""
    student, _ = student_and_method(seed)
    method = AFD(AttackSettings(steps=2), alpha=0.05, beta=0.25, gamma=25.0, update=update)
    method.teacher = copy.deepcopy(student).eval().requires_grad_(False)  # any frozen model will do
    opt = torch.optim.SGD(method.param_groups(student), lr=0.05, momentum=0.9, weight_decay=5e-4)
    student.train()
    torch.manual_seed(1)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    loss, metrics = method.loss(student, x, y, eps=0.1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return student, method, opt, metrics


def test_update_is_a_declared_option_with_a_flag_and_checked_values():
    option = next(o for o in AFD.options if o.name == "update")
    assert option.default == "summed" and option.choices == ("summed", "two_step") and option.flag == "--afd-update"
    with pytest.raises(FeatgapError, match="update must be one of summed, two_step"):
        AFD(AttackSettings(), update="three_step")
    from featgap.train import TrainConfig

    assert TrainConfig(method="afd").resolved().extra["update"] == "summed"


def test_two_step_changes_the_update_and_matches_two_manual_steps():
    summed, *_ = one_step("summed")
    two, method, main_opt, metrics = one_step("two_step")
    assert set(metrics) == {"adv_acc", "l_conf", "l_elim", "l_main", "conf_hit"}
    differs = [k for k, v in summed.state_dict().items() if not torch.equal(v, two.state_dict()[k])]
    # D1, the head and the backbone take L_main's gradient at weights the first step already moved;
    # D2 learns only from L_conf, computed at the same weights in both schedules, so its first step agrees
    assert {"intrinsic.weight", "head.weight", "stage1.0.weight"} <= set(differs) and "confused.weight" not in differs

    # the same step by hand: SGD on L_conf + L_elim with an optimiser of its own, then a fresh
    # forward and SGD on L_main with the main optimiser (same hyper-parameters, separate momentum)
    student, _ = student_and_method(0)
    ref = AFD(AttackSettings(steps=2), alpha=0.05, beta=0.25, gamma=25.0)
    ref.teacher = copy.deepcopy(student).eval().requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    first = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    second = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    student.train()
    torch.manual_seed(1)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    from featgap.attacks import pgd

    x_adv = pgd(student, x, y, eps=0.1, steps=2)
    t = ref.terms(student, x, x_adv, y)
    first.zero_grad()
    (t["conf"] + t["elim"]).backward()
    first.step()
    second.zero_grad()
    ref.terms(student, x, x_adv, y)["main"].backward()
    second.step()
    for k, v in student.state_dict().items():
        torch.testing.assert_close(two.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)

    # a separate optimiser for the disentangler terms, with its own momentum, at the main lr
    dis = method.disentangler_optimizer
    assert dis is not None and dis is not main_opt
    assert dis.param_groups[0]["lr"] == main_opt.param_groups[0]["lr"] == 0.05
    p = two.intrinsic.weight  # D1 is stepped by both optimisers, each with its own momentum buffer
    assert "momentum_buffer" in dis.state[p] and "momentum_buffer" in main_opt.state[p]
    assert "momentum_buffer" not in main_opt.state[two.confused.weight]  # D2: only the disentangler optimiser
    assert not torch.equal(dis.state[p]["momentum_buffer"], main_opt.state[p]["momentum_buffer"])
    assert summed is not None and one_step("summed")[1].disentangler_optimizer is None


def test_two_step_needs_the_optimiser_built_from_its_param_groups():
    student, method = student_and_method(0)
    method = AFD(AttackSettings(steps=1), update="two_step")
    method.start(create("smallcnn", 10, 1))
    with pytest.raises(FeatgapError, match="param_groups"):
        method.loss(method.start(create("smallcnn", 10, 1)), torch.rand(4, 1, 28, 28), torch.arange(4), eps=0.1)


@pytest.mark.parametrize("update", ["summed", "two_step"])
def test_both_updates_train_on_a_tiny_batch(update):
    """Thirty steps on 32 fixed images of ten noisy class patterns at a small ε (γ = 1, so the
    untrained teacher does not dominate): both schedules learn the batch and nothing diverges."""
    torch.manual_seed(0)
    method = AFD(AttackSettings(steps=2), gamma=1.0, update=update)
    student = method.start(create("smallcnn", 10, 1))
    opt = torch.optim.SGD(method.param_groups(student), lr=0.05, momentum=0.9)
    y = torch.arange(32) % 10
    x = 0.8 * torch.rand(10, 1, 28, 28)[y] + 0.2 * torch.rand(32, 1, 28, 28)
    student.train()
    for _ in range(30):
        loss, metrics = method.loss(student, x, y, eps=0.02)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    student.eval()
    with torch.no_grad():
        logits = student(x)
    assert F.cross_entropy(logits, y).item() < 0.5 and (logits.argmax(1) == y).float().mean().item() > 0.9
    assert (method.disentangler_optimizer is not None) == (update == "two_step")


def test_two_step_follows_the_lr_the_trainer_schedules():
    """The Trainer rewrites ``group["lr"]`` of its optimiser every step; the disentangler optimiser follows."""
    student, method, main_opt, _ = one_step("two_step")
    for group in main_opt.param_groups:  # what Trainer.fit does before each batch
        group["lr"] = 0.0125
    student.train()
    method.loss(student, torch.rand(8, 1, 28, 28), torch.arange(8), eps=0.1)
    assert method.disentangler_optimizer.param_groups[0]["lr"] == 0.0125
    assert method.main_group is main_opt.param_groups[0]  # the optimiser keeps the group it was given
