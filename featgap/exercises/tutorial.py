"""The tutorials' shared runs: one recipe per model, trained once and reused by every tutorial.

The tutorials in ``notebooks/`` keep their runs in one folder, ``runs/`` next to the
tutorials (the solution notebooks in ``notebooks/solutions/`` use the same folder, ``../runs``).
Tutorial 1 trains ``runs/notebook01/standard`` and ``runs/notebook01/pgd_at``; tutorials 2–5
call :func:`tutorial_run`, which reuses a finished run and trains a missing one with the recipe
below, so each tutorial also runs on its own, from a fresh clone.

========  ============================  ============================================================
run       folder                        recipe
========  ============================  ============================================================
standard  ``notebook01/standard``        3 epochs of clean training (tutorial 1)
pgd_at    ``notebook01/pgd_at``          6 epochs of PGD-5 adversarial training, ε ramped over 2
vaft      ``notebook02/vaft``            4 epochs of vAFT from ``standard`` (``mnist5k-smallcnn-vaft``'s shape)
afd       ``notebook02/afd``             4 epochs of AFD from ``standard`` (that shape, lr 0.02: :data:`AFD_LR`)
afa       ``notebook03/afa``             AFA: 6 epochs of contrastive pre-training, then 3 of ALF
========  ============================  ============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from torch import nn

from featgap import runs
from featgap.data import ImageSet
from featgap.errors import FeatgapError
from featgap.evaluate import Check, EvalResult, evaluate
from featgap.plots.results import wilson_interval
from featgap.presets import preset
from featgap.train import TrainConfig, fit, resolve_device, stage_dirs

COMMON = dict(dataset="mnist5k", model="smallcnn", monitor_n=200, probe_n=100, keep_checkpoints=1)
"""Settings every tutorial run shares (the monitor and the gap trajectory on 200 / 100 test digits)."""


def _fine_tune(method: str, epochs: int = 4, lr: float | None = None) -> TrainConfig:
    """The ``mnist5k-smallcnn-{method}`` preset compressed to ``epochs`` (same schedule shape), at ``lr``
    when given (else the preset's)."""
    values = preset(f"mnist5k-smallcnn-{method}")
    scale = epochs / values["epochs"]
    values.update(epochs=epochs, lr_steps=tuple((e * scale, f) for e, f in values["lr_steps"]), **COMMON)
    if lr is not None:
        values["lr"] = lr
    return TrainConfig(**values)


AFD_LR = 0.02
"""AFD's learning rate in the tutorials. The preset's 0.04 was tuned for 10 epochs, and 0.08 already
collapses there; on the 4-epoch schedule (ε ramped over the first 2, at the full lr) 0.04 collapsed
to chance in a single-thread CPU run (loss rising from epoch 2), while 0.02 reached 94.5 % clean and
59 % monitor PGD accuracy in the same setting. vAFT keeps its preset's 0.08."""


def _afa(pretrain_epochs: int = 6, finetune_epochs: int = 3) -> TrainConfig:
    values = preset("mnist5k-smallcnn-afa")
    values.update(epochs=pretrain_epochs, finetune={**values["finetune"], "epochs": finetune_epochs},
                  **{**COMMON, "probe_n": 0, "keep_checkpoints": 0})
    return TrainConfig(**values)


TUTORIAL_RUNS: dict[str, tuple[str, TrainConfig]] = {
    "standard": ("notebook01/standard", TrainConfig(method="standard", epochs=3, lr=0.05, **COMMON)),
    "pgd_at": ("notebook01/pgd_at", TrainConfig(method="pgd_at", epochs=6, eps_warmup_epochs=2, attack_steps=5,
                                                lr=0.05, **COMMON)),
    "vaft": ("notebook02/vaft", _fine_tune("vaft")),
    "afd": ("notebook02/afd", _fine_tune("afd", lr=AFD_LR)),
    "afa": ("notebook03/afa", _afa()),
}
"""Run name → (folder under the runs folder, its recipe). ``vaft`` and ``afd`` start from ``standard``."""

INIT = {"vaft": "standard", "afd": "standard"}
"""Runs that fine-tune another tutorial run."""

COMPARED = ("method", "epochs", "lr", "attack_steps", "eps_warmup_epochs", "seed")
"""The recipe fields a reused run must share with :data:`TUTORIAL_RUNS`."""


def tutorial_run(name: str, runs_dir: str | Path = "runs") -> Path:
    """The finished tutorial run ``name`` under ``runs_dir``: reused when it exists, else trained now.

    Prints one line either way: ``reusing runs/notebook01/standard``, or the Trainer's line for
    each finished run (what, epochs, seconds, the monitor's accuracies, where). A run it needs
    first (vAFT and AFD fine-tune ``standard``) is made the same way. A finished run of another
    recipe in the same folder is a one-line error (delete the folder to retrain).

    Arguments:
        name (str): a key of :data:`TUTORIAL_RUNS`.
        runs_dir (str | Path): the tutorials' runs folder. (Default: ``"runs"``)

    Examples::
        >>> standard = tutorial_run("standard")          # runs/notebook01/standard
        >>> afd = tutorial_run("afd", "../runs")          # from notebooks/solutions/
    """
    if name not in TUTORIAL_RUNS:
        raise FeatgapError(f"unknown tutorial run {name!r}; choose one of: {', '.join(TUTORIAL_RUNS)}")
    folder, cfg = TUTORIAL_RUNS[name]
    run_dir = Path(runs_dir) / folder
    if runs.read_summary(run_dir) is not None:
        first_stage = stage_dirs(run_dir)[0] if cfg.finetune else run_dir  # AFA: its recipe is stage 1's
        recorded = runs.read_config(first_stage).get("config", {})
        differs = [k for k in COMPARED if k in recorded and recorded[k] != getattr(cfg.resolved(), k)]
        if differs:
            raise FeatgapError(f"{run_dir} holds a run of another recipe ({', '.join(differs)} differ); "
                               "delete that folder to retrain it")
        print(f"reusing {run_dir}")
        return run_dir
    if name in INIT:
        cfg = TrainConfig(**{**cfg.as_dict(), "init": str(tutorial_run(INIT[name], runs_dir))})
    fit(cfg, out=run_dir, verbose=False)  # the Trainer prints one line per finished stage
    return run_dir


def _needs(name: str, runs_dir: Path) -> list[str]:
    """``name`` and the tutorial runs it starts from, first ones first."""
    return ([*_needs(INIT[name], runs_dir)] if name in INIT else []) + [name]


def _epochs(name: str) -> int:
    cfg = TUTORIAL_RUNS[name][1]
    return cfg.epochs + (cfg.finetune or {}).get("epochs", 0)


def tutorial_runs(names: Sequence[str], runs_dir: str | Path = "runs") -> dict[str, Path]:
    """:func:`tutorial_run` for several runs at once: the missing ones trained side by side.

    On a CPU with two free cores, two runs train at the same time in worker processes
    (:mod:`featgap.jobs`, one torch thread each), which on a 2-core laptop finishes sooner than
    one after the other with two threads each; a run waits for the run it fine-tunes. Each
    prints its one line here when it finishes. Elsewhere (a GPU, one free core) they train in
    order, as :func:`tutorial_run` does.

    Examples::
        >>> RUN = tutorial_runs(["standard", "pgd_at", "afa"])   # {"standard": Path("runs/notebook01/standard"), ...}
    """
    import torch

    from featgap import threads
    from featgap.jobs import Job, plan_workers, run_jobs

    runs_dir = Path(runs_dir)
    unknown = [n for n in names if n not in TUTORIAL_RUNS]
    if unknown:
        raise FeatgapError(f"unknown tutorial run {unknown[0]!r}; choose one of: {', '.join(TUTORIAL_RUNS)}")
    wanted = list(dict.fromkeys(n for name in names for n in _needs(name, runs_dir)))
    missing = [n for n in wanted if runs.read_summary(runs_dir / TUTORIAL_RUNS[n][0]) is None]
    jobs = {n: Job(tutorial_run, (n, runs_dir), tuple(d for d in _needs(n, runs_dir)[:-1] if d in missing))
            for n in sorted(missing, key=_epochs, reverse=True)}  # longest first
    workers, per_worker = plan_workers(resolve_device("auto").type, list(jobs), threads.cores(),
                                       torch.get_num_threads())
    if jobs:
        run_jobs(jobs, workers=workers, threads=per_worker, desc="training")
    return {n: tutorial_run(n, runs_dir) if n not in missing else runs_dir / TUTORIAL_RUNS[n][0] for n in names}


def evaluate_once(model: nn.Module, test: ImageSet, where: str | Path, *, n: int, pgd_steps: int = 20,
                  autoattack: bool = True, seed: int = 0) -> EvalResult:
    """:func:`featgap.evaluate.evaluate` on ``n`` test images, kept on disk and reused.

    ``where`` is a run directory (the result is kept next to the run in the file named by its
    settings, e.g. ``RUN/eval-n100.json``: :func:`featgap.runs.eval_path`, so evaluations with
    other settings are all kept) or a ``.json`` file (for a model that is not a run; a later call
    with other settings replaces it). A later call with the same settings (n, seed, PGD steps,
    with or without AutoAttack, the dataset's L∞ ε) reads the result back instead of attacking
    again, so a second run of a tutorial, or the next tutorial evaluating the same model, takes
    no time. Delete the file to re-evaluate a retrained model.

    Examples::
        >>> r = evaluate_once(runs.load(run), test, run, n=100)     # kept in run/eval-n100.json
        >>> print(describe("pgd_at", r, ("clean", "pgd", "autoattack")))
    """
    where = Path(where)
    want = {"n": n, "seed": seed, "pgd_steps": pgd_steps, "eps": test.info.default_eps("linf"), "norm": "linf"}
    if where.is_dir():
        path = runs.find_eval(where, n=n, seed=seed, pgd_steps=pgd_steps, autoattack=autoattack, norm="linf",
                              eps=want["eps"], aa_version="standard")
    else:
        path = where
    if path is not None and path.is_file():
        saved = runs.read_json(path)
        if all(saved.get(k) == v for k, v in want.items()) and (saved.get("autoattack") is not None) == autoattack:
            names = {f.name for f in fields(EvalResult)}
            values = {k: v for k, v in saved.items() if k in names}
            values["checks"] = [Check(**c) for c in saved.get("checks", [])]
            return EvalResult(**values)
    result = evaluate(model, test, n=n, pgd_steps=pgd_steps, autoattack=autoattack, seed=seed)
    if where.is_dir():
        runs.write_eval(where, result.as_dict())
    else:
        where.parent.mkdir(parents=True, exist_ok=True)
        runs.write_json(where, result.as_dict())
    return result


def _evaluate_run_once(run_dir: Path, dataset: str, n: int, pgd_steps: int, autoattack: bool, seed: int) -> EvalResult:
    from featgap import data

    return evaluate_once(runs.load(run_dir), data.load(dataset, "test"), Path(run_dir), n=n,
                         pgd_steps=pgd_steps, autoattack=autoattack, seed=seed)


def evaluate_once_each(run_dirs: dict[str, str | Path], test: ImageSet, *, n: int, pgd_steps: int = 20,
                       autoattack: bool = True, seed: int = 0) -> dict[str, EvalResult]:
    """:func:`evaluate_once` of several runs (name → run folder, each kept next to its run), side by side.

    AutoAttack on a small CPU model is bound by the cost of its many small operations (FAB-T
    and Square run thousands of passes on a few dozen digits), which a second thread barely
    speeds up and a second process doubles: on a CPU with two free cores two runs are attacked
    at the same time (:mod:`featgap.jobs`). Results already kept are read back at once.

    Examples::
        >>> results = evaluate_once_each({"pgd_at": RUN["pgd_at"], "afa": RUN["afa"]}, test, n=100)
    """
    import torch

    from featgap import threads
    from featgap.jobs import Job, plan_workers, run_jobs

    jobs = {name: Job(_evaluate_run_once, (Path(run), test.info.name, n, pgd_steps, autoattack, seed))
            for name, run in run_dirs.items()}
    workers, per_worker = plan_workers(resolve_device("auto").type, list(jobs), threads.cores(),
                                       torch.get_num_threads())
    kept = {}
    for name, run in run_dirs.items():  # what is kept already needs no worker
        if workers > 1 and runs.find_eval(run, n=n, seed=seed, pgd_steps=pgd_steps, autoattack=autoattack,
                                          norm="linf", eps=test.info.default_eps("linf")) is not None:
            kept[name] = _evaluate_run_once(Path(run), test.info.name, n, pgd_steps, autoattack, seed)
    if len(kept) == len(jobs):
        return kept
    todo = {k: j for k, j in jobs.items() if k not in kept}
    if len(todo) < 2:
        workers, per_worker = 1, torch.get_num_threads()
    done = run_jobs(todo, workers=workers, threads=per_worker, desc="evaluating")
    return {name: kept[name] if name in kept else done[name] for name in run_dirs}


LABELS = {"clean": "clean", "pgd_ce": "CE-PGD-{k}", "pgd_margin": "margin-PGD-{k}", "pgd": "PGD-{k}",
          "autoattack": "AutoAttack", "robust": "robust"}
"""How :func:`describe` names each accuracy of an :class:`~featgap.evaluate.EvalResult`."""


def describe(name: str, result: EvalResult, fields: Sequence[str] = ("clean", "pgd")) -> str:
    """One line per evaluated model: each accuracy with its 95 % Wilson interval, the n and the ε.

    An accuracy measured on ``n`` images is uncertain by several points when ``n`` is a few
    hundred; the interval (:func:`featgap.plots.results.wilson_interval`) says by how much.

    Examples::
        >>> print(describe("pgd_at", evaluate(model, test, n=200, autoattack=False)))
        pgd_at    clean  96.5% [93.0, 98.3]  PGD-20  71.0% [64.4, 76.8]  (n = 200, L∞ ε = 0.3)
    """
    parts = []
    for field in fields:
        value = getattr(result, field)
        if value is None:
            continue
        lo, hi = wilson_interval(value, result.n)
        parts.append(f"{LABELS[field].format(k=result.pgd_steps)} {value:5.1f}% [{lo:4.1f}, {hi:5.1f}]")
    norm = "L∞" if result.norm == "linf" else "L2"
    return f"{name:9} " + "  ".join(parts) + f"  (n = {result.n}, {norm} ε = {result.eps:g}, 95% Wilson intervals)"


__all__ = ["TUTORIAL_RUNS", "describe", "evaluate_once", "evaluate_once_each", "tutorial_run", "tutorial_runs"]
