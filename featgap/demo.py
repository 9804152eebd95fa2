"""``featgap demo``: the whole story in a few minutes on a laptop CPU.

1. Train ``smallcnn`` on the bundled MNIST digits (``mnist5k``) with standard training.
2. Train the same architecture with PGD adversarial training (ε = 0.3, ε ramped up over the
   first two epochs, which MNIST PGD-AT needs to get started).
3. Fine-tune the standard model adversarially with AFD (PGD-AT from the natural weights plus the
   feature disentangler and the natural teacher; :mod:`featgap.methods.afd`), with the
   ``mnist5k-smallcnn-afd`` preset's settings on a shorter schedule.
4. With ``--runs``, more (not by default, to stay within 3 minutes on a 2-core CPU:
   :data:`DEFAULT_RUNS`): ``vaft``, AFD's baseline (the same fine-tuning without disentangler and
   teacher), and ``afa`` (:mod:`featgap.methods.afa`): adversarial supervised-contrastive
   pre-training of the encoder, then ALF (a linear head trained with PGD-AT on the frozen encoder),
   with the ``mnist5k-smallcnn-afa`` preset on a shorter schedule. Its two stages are the run
   directories ``afa-pretrain`` and ``afa``.
5. Evaluate every run on a stratified subset of the test split: clean, PGD-20 (CE and logit
   margin, worst case per image) and standard AutoAttack accuracy, robust accuracy (the worst
   case over every attack), with the sanity checks of ``docs/evaluation.md``.
6. Print a table with the **feature gap** of each model: how far the features of an input and
   of its PGD-20 example lie apart (robust models' gaps are several times smaller), and AFD's
   disentangled components: ‖f1‖, ‖f2‖ and cos(f1, f2) on natural and adversarial inputs.
7. Write ``report.html`` next to the runs (:func:`write_report`, :mod:`featgap.report`): one
   standalone page with the table, the training curves, the gap per layer and against ε, the
   feature maps (vAFT and AFD before / after fine-tuning), AFD's components and the alignment
   measures, measured on the same test subset; it opens offline in any browser.

Training and evaluation run as a job graph on two worker processes when the CPU has two free
cores (:mod:`featgap.jobs`; one process on a GPU). Finished runs in ``--out`` are reused
(``--fresh`` retrains), so the demo can be rerun to look at the table again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from featgap import data, report, runs, threads
from featgap.evaluate import EvalResult, evaluate
from featgap.jobs import Job, plan_workers, run_jobs
from featgap.plots.results import wilson_interval
from featgap.presets import preset
from featgap.train import TrainConfig, fit, resolve_device, stage_dirs

DEMO_N = 150
"""Test images the demo evaluates on. AutoAttack's cost grows with n — about 0.28 s per image on a
robust smallcnn on 2 cores — and four robust models must fit the 5-minute budget."""
FINE_TUNE_EPOCHS = 4
"""vAFT and AFD fine-tune for this many epochs in the demo (the presets use 10)."""


def _fine_tune(method: str) -> TrainConfig:
    """The ``mnist5k-smallcnn-{method}`` preset on a FINE_TUNE_EPOCHS schedule of the same shape;
    ``init`` is filled in by :func:`run_demo` (the standard run)."""
    values = preset(f"mnist5k-smallcnn-{method}")
    scale = FINE_TUNE_EPOCHS / values["epochs"]
    values.update(epochs=FINE_TUNE_EPOCHS, lr_steps=tuple((e * scale, f) for e, f in values["lr_steps"]),
                  probe_n=0, monitor_n=200)
    return TrainConfig(**values)


AFA_EPOCHS = (6, 3)
"""AFA's pre-training and ALF epochs in the demo (the preset uses 10 and 5)."""


def _afa() -> TrainConfig:
    """The ``mnist5k-smallcnn-afa`` preset (pre-training, then ALF) on AFA_EPOCHS."""
    values = preset("mnist5k-smallcnn-afa")
    values.update(epochs=AFA_EPOCHS[0], probe_n=0, monitor_n=200,
                  finetune={**values["finetune"], "epochs": AFA_EPOCHS[1]})
    return TrainConfig(**values)


DEMO_RUNS: dict[str, TrainConfig] = {
    "standard": TrainConfig(dataset="mnist5k", model="smallcnn", method="standard", epochs=4, lr=0.05,
                            batch_size=128, monitor_n=200),
    "pgd_at": TrainConfig(dataset="mnist5k", model="smallcnn", method="pgd_at", epochs=8, lr=0.05,
                          batch_size=128, eps_warmup_epochs=2, attack_steps=10, monitor_n=200),
    "vaft": _fine_tune("vaft"),
    "afd": _fine_tune("afd"),
    "afa": _afa(),
}
"""Every run the demo can train: name → recipe."""

DEFAULT_RUNS = ("standard", "pgd_at", "afd")
"""What ``featgap demo`` trains and evaluates unless ``--runs`` says otherwise: the natural model,
the robust one trained from scratch, and AFD fine-tuned from the natural one. vAFT and AFA are
left out to keep the demo within 3 minutes on a 2-core CPU: each robust model costs about a
minute of AutoAttack in a one-thread worker (FAB-T and Square), so a fourth robust model adds a
minute of wall time that the second core cannot share (measured: README "What the demo does").
``featgap demo --runs standard pgd_at vaft afd afa`` trains all five (:data:`MORE_RUNS_HINT`);
tutorial 2 compares AFD with vAFT, tutorial 3 teaches AFA."""

MORE_RUNS_HINT = ("vAFT (AFD's baseline) and AFA are one flag away: featgap demo --runs standard pgd_at vaft afd afa "
                  "(a few minutes more; the runs here are reused)")
"""The line the demo prints at the end when it ran the default runs."""


def demo_runs(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` checked and completed: vAFT and AFD fine-tune the standard run, which is added if missing.

    >>> demo_runs(["afd"])
    ('standard', 'afd')
    """
    from featgap.errors import FeatgapError

    unknown = [n for n in names if n not in DEMO_RUNS]
    if unknown:
        raise FeatgapError(f"--runs: unknown demo run {unknown[0]!r}; choose from {', '.join(DEMO_RUNS)}")
    wanted = set(names) | ({"standard"} if {"vaft", "afd"} & set(names) else set())
    return tuple(n for n in DEMO_RUNS if n in wanted)


def _train_or_reuse(name: str, cfg: TrainConfig, out: Path, fresh: bool) -> str:
    """Train demo run ``name`` into ``out/name`` (unless finished there and not ``fresh``); the line to print."""
    run_dir = out / name
    if fresh:
        import shutil

        for stage_dir in (stage_dirs(run_dir) if cfg.finetune else (run_dir,)):
            shutil.rmtree(stage_dir, ignore_errors=True)
    elif (run_dir / runs.SUMMARY).exists():
        return f"[{name}] reusing the finished run in {run_dir} (use --fresh to retrain)"
    start = time.perf_counter()
    fit(cfg, out=run_dir, verbose=False)
    epochs = f"{cfg.epochs} + {cfg.finetune['epochs']}" if cfg.finetune else f"{cfg.epochs}"
    return f"[{name}] trained {epochs} epochs in {time.perf_counter() - start:.0f} s → {run_dir}"


def _evaluate_run(name: str, out: Path, n: int, seed: int, device: str) -> EvalResult:
    """Evaluate demo run ``name`` on its ``n`` test digits; keep the result next to the run (eval-nN.json)."""
    test = data.load("mnist5k", "test")
    result = evaluate(runs.load(out / name, device=resolve_device(device)), test, n=n, seed=seed)
    runs.write_eval(out / name, result.as_dict())  # eval-n150.json: other evaluations are kept
    return result


def _measure_run(name: str, out: Path, n: int, seed: int, device: str) -> report.Measurement:
    """Probe demo run ``name`` for the report on the ``n`` test digits the evaluation uses
    (:func:`featgap.report.measure_run`): a job of its own, so it runs while AutoAttack works on
    another run, not after everything else."""
    return report.measure_run(report.read_runs([out / name])[0], n=n, seed=seed, device=device)


def _jobs(names: tuple[str, ...], out: Path, n: int, device: str, seed: int, fresh: bool) -> dict[str, Job]:
    """The demo as a job graph: train each run (vAFT and AFD after the standard run they start
    from), evaluate each run after it is trained, and probe it for the report. Longest jobs first,
    so two workers finish together; the report's probes last, to fill a worker that would idle."""
    configs = {}
    for name in names:
        cfg = DEMO_RUNS[name]
        init = str(out / "standard") if cfg.method in ("vaft", "afd") else None
        configs[name] = TrainConfig(**{**cfg.as_dict(), "device": device, "seed": seed, "init": init})
    jobs: dict[str, Job] = {}
    for name in ("afa", "pgd_at", "standard", "afd", "vaft"):
        if name in configs:
            after = ("train:standard",) if configs[name].init else ()
            jobs[f"train:{name}"] = Job(_train_or_reuse, (name, configs[name], out, fresh), after)
    for name in ("pgd_at", "afa", "afd", "vaft", "standard"):
        if name in configs:
            jobs[f"evaluate:{name}"] = Job(_evaluate_run, (name, out, n, seed, device), (f"train:{name}",))
    for name in names:
        jobs[f"measure:{name}"] = Job(_measure_run, (name, out, n, seed, device), (f"train:{name}",))
    return jobs


TABLE_LEGEND = ("CE-PGD: PGD-20 on cross-entropy alone. PGD-20: per image the worst of CE- and margin-PGD-20.\n"
                "robust: per image the worst of every attack run (PGD, AutoAttack, the checks' attacks).\n"
                "avg = (clean + PGD-20 + AA) / 3.  paper = (clean + CE-PGD + AA) / 3, the AFD paper's avg.\n"
                "robust 95% CI: Wilson interval of the robust accuracy over the n images (two runs differ only\n"
                "where their intervals do not overlap).")
"""What the columns of :func:`format_table` mean, printed under it by the demo."""


def format_table(results: dict[str, EvalResult]) -> str:
    """The demo's table: accuracies (%) and the mean feature gap under PGD-20 (legend: :data:`TABLE_LEGEND`).

    ``PGD-20``, ``robust`` and ``avg`` are per-image worst cases (:func:`featgap.evaluate.evaluate`);
    ``CE-PGD`` and ``paper`` (the AFD paper's average) are shown next to them, labelled, to compare.
    """
    head = (f"{'model':10} {'clean':>6} {'CE-PGD':>7} {'PGD-20':>7} {'AA':>6} {'robust':>7} {'avg':>6} "
            f"{'paper':>6} {'robust 95% CI':>14} │ {'gap L2':>7} {'gap L∞':>7} {'gap cos':>8}")
    lines = [head, "─" * len(head)]

    def num(v: float | None, width: int) -> str:
        return f"{v:{width}.1f}" if v is not None else f"{'–':>{width}}"

    for name, r in results.items():
        g = r.feature_gap
        worst = r.robust if r.robust is not None else r.pgd
        lo, hi = wilson_interval(worst, r.n)
        ci = f"[{lo:4.1f}, {hi:4.1f}]"
        lines.append(f"{name:10} {r.clean:6.1f} {num(r.pgd_ce, 7)} {r.pgd:7.1f} {num(r.autoattack, 6)} "
                     f"{num(r.robust, 7)} {num(r.avg, 6)} {num(r.avg_paper, 6)} {ci:>14} │ {g.get('l2', float('nan')):7.3f} "
                     f"{g.get('linf', float('nan')):7.3f} {g.get('cosine', float('nan')):8.4f}")
    return "\n".join(lines)


def format_components(run_dir: Path, test: data.ImageSet, n: int, seed: int, device: str = "auto") -> str:
    """AFD's disentangled components on the demo's test subset and its PGD-20 examples (means)."""
    from featgap.methods.afd import load_student
    from featgap.probes import COMPONENT_STATS, adversarial_examples, component_norms, summarize

    student = load_student(str(run_dir), device=resolve_device(device))
    subset = test.stratified_subset(n, seed) if n < len(test) else test
    x, y = subset.tensors()
    x_adv = adversarial_examples(student, x, y, eps=test.info.eps, steps=20, seed=seed)
    s = summarize(component_norms(student, x, y, x_adv), by="input", metrics=COMPONENT_STATS, n_boot=0)
    lines = ["AFD components (f1 = D1·z intrinsic, f2 = D2·z confused; means over the subset):",
             f"{'input':12} {'‖f1‖':>8} {'‖f2‖':>8} {'cos(f1,f2)':>11} {'confused head → ŷc':>19}"]
    for r in s.to_dict("records"):
        name = "natural" if r["input"] == "nat" else "PGD-20"
        lines.append(f"{name:12} {r['f1_norm_mean']:8.3f} {r['f2_norm_mean']:8.3f} {r['cos_f1_f2_mean']:11.3f} "
                     f"{100 * r['conf_hit_mean']:18.1f}%")
    return "\n".join(lines)


def write_report(out: str | Path, names: tuple[str, ...] = DEFAULT_RUNS, n: int = DEMO_N, seed: int = 0,
                 device: str = "auto", evaluation: dict | None = None,
                 measured: dict[str, report.Measurement] | None = None) -> report.Report:
    """The demo's HTML report, ``OUT/report.html``: :func:`featgap.report.write` on the runs ``OUT/NAME``
    with ``compute`` on, probing the same ``n`` stratified test images the evaluation used, and
    showing the evaluation with those settings (``evaluation``, :func:`featgap.runs.read_eval`'s
    keywords; default: ``n`` images, ``seed``, AutoAttack on). ``measured`` (run name →
    :class:`~featgap.report.Measurement`) holds the probes already computed; the others are computed here.

    >>> write_report("runs/demo").path       # PosixPath('runs/demo/report.html')
    """
    out = Path(out)
    evaluation = {"n": n, "seed": seed, "autoattack": True} if evaluation is None else evaluation
    return report.write([out / name for name in names], out / "report.html", compute=True, n=n, seed=seed,
                        device=device, evaluation=evaluation,
                        measured={out / name: m for name, m in (measured or {}).items()})


def run_demo(out: str | Path = "runs/demo", n: int = DEMO_N, device: str = "auto", seed: int = 0,
             fresh: bool = False, names: Sequence[str] = DEFAULT_RUNS) -> dict[str, EvalResult]:
    """Train the runs ``names`` (:data:`DEFAULT_RUNS`; any of :data:`DEMO_RUNS`), evaluate and print;
    returns the evaluation results by run name."""
    from featgap.errors import FeatgapError

    if n < 10:
        raise FeatgapError(f"--n must be at least 10; got {n}")
    names = demo_runs(names)
    out = Path(out)
    start = time.perf_counter()
    jobs = _jobs(names, out, n, device, seed, fresh)
    workers, per_worker = plan_workers(resolve_device(device).type, list(jobs), threads.cores(),
                                       torch.get_num_threads())
    if workers > 1:
        print(f"training and evaluating on {workers} worker processes side by side, {per_worker} torch "
              f"thread{'s' if per_worker > 1 else ''} each (featgap.jobs)")
    done = run_jobs(jobs, workers=workers, threads=per_worker, desc="demo",
                    on_done=lambda name, r: print(r, flush=True) if name.startswith("train:") else None)
    results: dict[str, EvalResult] = {name: done[f"evaluate:{name}"] for name in names}
    test = data.load("mnist5k", "test")
    print()
    print(f"mnist5k test subset: n = {next(iter(results.values())).n} (stratified, seed {seed}), "
          f"L∞ ε = {test.info.eps}, smallcnn")
    print(format_table(results))
    print(TABLE_LEGEND)
    if "afd" in names:
        print()
        print(format_components(out / "afd", test, n=n, seed=seed, device=device))
    print()
    for name, r in results.items():
        flagged = r.flags
        print(f"sanity checks, {name}: {len(r.checks) - len(flagged)}/{len(r.checks)} passed"
              + "".join(f"\n  FLAG {c.name}: {c.detail}" for c in flagged))
    print()
    evaluated = {"n": next(iter(results.values())).n, "seed": seed, "autoattack": True}
    measured = {name: done[f"measure:{name}"] for name in names}
    print(write_report(out, names, n=n, seed=seed, device=device, evaluation=evaluated, measured=measured).line()
          + " — open it in any browser, no Python needed")
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; runs in {out}/")
    if set(names) != set(DEMO_RUNS):
        print(MORE_RUNS_HINT)
    return results

