"""featgap.exercises, both ways: featgap's own answer passes every check, and the usual wrong
answers fail with the message that names the mistake (never a bare assert)."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from featgap.attacks import fgsm as lib_fgsm
from featgap.attacks import pgd as lib_pgd
from featgap.exercises import Feedback, TUTORIAL_RUNS, check, tutorial_run
from featgap.methods.afd import confusing_target
from featgap.plots.results import wilson_interval
from featgap.probes import centroid_misalignment, extract_features, pairwise_gap


def grad_sign(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g.sign()


# ------------------------------------------------------------------ the library's answers pass
RIGHT = {
    "fgsm": (check.fgsm, lambda model, x, y, eps: lib_fgsm(model, x, y, eps=eps)),
    "gap_l2": (check.gap, lambda m, x, xa: pairwise_gap(m.features(x), m.features(xa))["l2"]),
    "gap_linf": (lambda fn: check.gap(fn, "linf"), lambda m, x, xa: pairwise_gap(m.features(x), m.features(xa))["linf"]),
    "confused_target": (check.confused_target, confusing_target),
    "fold_head": (check.fold_head, lambda w, b, d1: (w @ d1, b)),
    "margin": (check.margin, lambda l, y: l.scatter(1, y[:, None], float("-inf")).amax(1) - l.gather(1, y[:, None])[:, 0]),
    "misalignment": (check.misalignment, lambda f, fa, y: centroid_misalignment(f, fa, y)["adv"]),
    "wilson": (check.wilson, lambda k, n: tuple(v / 100 for v in wilson_interval(100 * k / n, n))),
    "worst_case": (check.worst_case, lambda m: 100 * torch.stack(list(m.values())).all(0).float().mean().item()),
    "pgd": (check.pgd, lambda model, x, y, eps, steps, a: lib_pgd(model, x, y, eps=eps, steps=steps, step_size=a,
                                                               random_start=False)),
    "safe_load": (check.safe_load, lambda path: torch.load(path, weights_only=True)),
    "features": (check.features, lambda model, x, layer: extract_features(model, x, [layer])[layer]),
}


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_the_librarys_own_answer_passes(name):
    run, answer = RIGHT[name]
    fb = run(answer)
    assert isinstance(fb, Feedback) and fb.ok, fb
    assert repr(fb).startswith("✓")


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_an_unsolved_exercise_says_so_and_does_not_raise(name):
    def stub(*args):
        raise NotImplementedError

    fb = RIGHT[name][0](stub)
    assert not fb.ok and "not solved yet" in fb.message and repr(fb).startswith("✗")


# ------------------------------------------------------------------ typical wrong answers fail, helpfully
def fgsm_sign_error(model, x, y, eps):
    return (x - eps * grad_sign(model, x, y)).clamp(0, 1)


def fgsm_no_clamp(model, x, y, eps):
    return x + eps * grad_sign(model, x, y)


def fgsm_raw_gradient(model, x, y, eps):
    x0 = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x0), y), x0)
    return (x + eps * g).clamp(0, 1)


def pgd_no_projection(model, x, y, eps, steps, alpha):
    x_adv = x.clone()
    for _ in range(steps):
        x_adv = (x_adv + alpha * grad_sign(model, x_adv, y)).clamp(0, 1)
    return x_adv


def features_unpooled(model, x, layer):
    out = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.setdefault("f", o))
    model(x)
    handle.remove()
    return out["f"]


def features_hook_left(model, x, layer):
    out = {}
    model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.setdefault("f", o))
    model(x)
    return out["f"].mean(dim=(2, 3))


def unsafe_load(path):
    with open(path, "rb") as f:
        return pickle.load(f) if str(path).endswith("evil.pt") else torch.load(path, weights_only=True)


WRONG = [
    ("sign error in FGSM", lambda: check.fgsm(fgsm_sign_error), "sign error"),
    ("no clamp to [0, 1]", lambda: check.fgsm(fgsm_no_clamp), "clamp"),
    ("raw gradient, not its sign", lambda: check.fgsm(fgsm_raw_gradient), "sign"),
    ("gap on logits", lambda: check.gap(lambda m, x, xa: (m(x) - m(xa)).norm(dim=1)), "logits"),
    ("L2 where L∞ was asked", lambda: check.gap(lambda m, x, xa: (m.features(x) - m.features(xa)).norm(dim=1), "linf"),
     "L2 distance, but the L∞ gap was asked"),
    ("L∞ where L2 was asked", lambda: check.gap(lambda m, x, xa: (m.features(x) - m.features(xa)).abs().amax(1)),
     "L∞ distance, but the L2 gap was asked"),
    ("one mean gap, not one per image", lambda: check.gap(lambda m, x, xa: (m.features(x) - m.features(xa)).norm(dim=1)
                                                          .mean()), "single number"),
    ("squared L2", lambda: check.gap(lambda m, x, xa: ((m.features(x) - m.features(xa)) ** 2).sum(1)), "squared"),
    ("ŷc = prediction everywhere", lambda: check.confused_target(lambda l, y: l.argmax(1)), "never be y"),
    ("ŷc = runner-up everywhere", lambda: check.confused_target(lambda l, y: l.topk(2, 1).indices[:, 1]),
     "runner-up"),
    ("D1 transposed", lambda: check.fold_head(lambda w, b, d1: (w @ d1.T, b)), "transposed"),
    ("bias moved", lambda: check.fold_head(lambda w, b, d1: (w @ d1, b + 1)), "bias"),
    ("margin sign flipped", lambda: check.margin(
        lambda l, y: l.gather(1, y[:, None])[:, 0] - l.scatter(1, y[:, None], float("-inf")).amax(1)), "sign flipped"),
    ("margin max includes y", lambda: check.margin(lambda l, y: l.amax(1) - l.gather(1, y[:, None])[:, 0]),
     "includes the true class"),
    ("misalignment in percent", lambda: check.misalignment(lambda f, fa, y: 100 * centroid_misalignment(f, fa, y)["adv"]),
     "percentage"),
    ("misalignment on natural features", lambda: check.misalignment(
        lambda f, fa, y: centroid_misalignment(f, fa, y)["nat"]), "natural features"),
    ("Wald interval", lambda: check.wilson(lambda k, n: (k / n - 1.959964 * (k / n * (1 - k / n) / n) ** 0.5,
                                                        k / n + 1.959964 * (k / n * (1 - k / n) / n) ** 0.5)), "Wald"),
    ("Wilson in percent", lambda: check.wilson(lambda k, n: wilson_interval(100 * k / n, n)), "percentages"),
    ("min of accuracies", lambda: check.worst_case(lambda m: min(100 * v.float().mean().item() for v in m.values())),
     "AND the masks per image"),
    ("PGD without projection", lambda: check.pgd(pgd_no_projection), "project after every step"),
    ("torch.load without weights_only", lambda: check.safe_load(unsafe_load), "RAN inside your loader"),
    ("unpooled features", lambda: check.features(features_unpooled), "Average over height and width"),
    ("hook left attached", lambda: check.features(features_hook_left), "handle.remove()"),
    ("wrong layer", lambda: check.features(lambda m, x, layer: extract_features(m, x, ["layer2"])["layer2"]),
     "output of 'layer2'"),
    ("not a function", lambda: check.fgsm(None), "expected a function"),
    ("a crashing answer", lambda: check.margin(lambda l, y: l[100]), "raised IndexError"),
]


@pytest.mark.parametrize("mistake, run, words", WRONG, ids=[w[0] for w in WRONG])
def test_a_typical_mistake_fails_with_a_message_that_names_it(mistake, run, words):
    fb = run()
    assert isinstance(fb, Feedback) and not fb.ok and not bool(fb)
    assert words in fb.message, f"{mistake}: {fb}"


def test_the_checks_use_a_fixed_batch_and_model():
    (x1, y1), (x2, y2) = check.fixed_batch(), check.fixed_batch()
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.shape == (check.BATCH, 1, 28, 28)
    a, b = check.reference_model(), check.reference_model()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_tutorial_run_names_and_a_foreign_recipe_are_one_line_errors(tmp_path):
    from featgap import runs
    from featgap.errors import FeatgapError

    with pytest.raises(FeatgapError, match="unknown tutorial run"):
        tutorial_run("nope", tmp_path)
    folder, cfg = TUTORIAL_RUNS["standard"]
    run = tmp_path / folder
    run.mkdir(parents=True)
    runs.write_json(run / runs.CONFIG, {"config": {**cfg.resolved().as_dict(), "epochs": 99}})
    runs.write_json(run / runs.SUMMARY, {"epochs": 99})
    with pytest.raises(FeatgapError, match="another recipe"):
        tutorial_run("standard", tmp_path)


def test_misalignment_centroids_from_adversarial_features_fail():
    fb = check.misalignment(lambda f, fa, y: centroid_misalignment(fa, fa, y)["adv"])
    assert not fb.ok and "centroids of the adversarial features" in fb.message


def test_evaluate_once_reuses_a_result_of_the_same_settings_only(tmp_path, monkeypatch):
    from featgap import data
    from featgap.exercises import tutorial

    test = data.load("mnist5k", "test")
    model = check.reference_model()
    path = tmp_path / "eval.json"
    first = tutorial.evaluate_once(model, test, path, n=20, pgd_steps=2, autoattack=False)
    calls = []
    monkeypatch.setattr(tutorial, "evaluate", lambda *a, **k: calls.append(k) or first)
    again = tutorial.evaluate_once(model, test, path, n=20, pgd_steps=2, autoattack=False)
    assert not calls and again.as_dict() == first.as_dict() and again.checks == first.checks
    tutorial.evaluate_once(model, test, path, n=30, pgd_steps=2, autoattack=False)
    assert calls and calls[0]["n"] == 30


def test_tutorial_run_reuses_a_finished_two_stage_run_by_its_first_stage(tmp_path, capsys):
    from featgap import runs
    from featgap.train import stage_dirs

    folder, cfg = TUTORIAL_RUNS["afa"]
    pre, fine = stage_dirs(tmp_path / folder)
    for d, c in ((pre, cfg.resolved()), (fine, cfg.finetune_config(init=str(pre)).resolved())):
        d.mkdir(parents=True)
        runs.write_json(d / runs.CONFIG, {"config": c.as_dict()})
        runs.write_json(d / runs.SUMMARY, {"epochs": c.epochs})
    assert tutorial_run("afa", tmp_path) == tmp_path / folder
    assert f"reusing {tmp_path / folder}" in capsys.readouterr().out


def test_evaluate_once_in_a_run_directory_keeps_each_settings_in_its_own_file(tmp_path, widget_runs):
    import shutil

    from featgap import data, runs
    from featgap.exercises import tutorial

    run = tmp_path / "run"
    shutil.copytree(widget_runs["standard"], run)
    legacy = (run / "eval.json").read_text()
    test, model = data.load("mnist5k", "test"), runs.load(run)
    first = tutorial.evaluate_once(model, test, run, n=20, pgd_steps=2, autoattack=False)
    tutorial.evaluate_once(model, test, run, n=30, pgd_steps=2, autoattack=False)
    assert (run / "eval-n20-pgd2-no-autoattack.json").is_file() and (run / "eval-n30-pgd2-no-autoattack.json").is_file()
    assert (run / "eval.json").read_text() == legacy  # nothing replaced
    again = tutorial.evaluate_once(model, test, run, n=20, pgd_steps=2, autoattack=False)
    assert again.as_dict() == first.as_dict()
