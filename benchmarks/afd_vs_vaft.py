"""The AFD experiment on a CPU: vAFT vs AFD (summed and two-step updates) from one natural smallcnn, mnist5k.

    python benchmarks/afd_vs_vaft.py --tune                 # the experiment; section "afd" of docs/results.md
    python benchmarks/afd_vs_vaft.py --quick --out /tmp/x --results /tmp/r.md   # pipeline check, numbers meaningless

1. Carve a validation split (``val_fraction=0.2``, seed 0) from mnist5k's 4,000 training digits
   and train one natural (standard) smallcnn on the other 3,200 only, so that the learning
   rates chosen on the validation digits are chosen on images no model here has trained on.
2. ``--tune``: for each of vAFT, AFD with the summed update and AFD with the reference code's
   two-step update (``--afd-update two_step``, docs/methods/afd.md), fine-tune from the natural
   model at every lr of ``--tune-lrs`` on the training part (seed 0) and keep the lr with the
   best PGD-10 accuracy on 200 validation digits (worst case of the CE and the margin
   objective). Every variant gets the same trials. The test split is never looked at.
3. Every fine-tuning run trains on the training part only (``val_fraction=0.2``; each seed
   holds out its own 800 digits), so the seed-0 run at the chosen lr *is* the tuning run: the
   choice costs no extra training. Other seeds rerun it. Everything else is the
   ``mnist5k-smallcnn-vaft`` / ``-afd`` preset's. Every epoch records the feature gap at the
   pooled penultimate layer on 200 validation digits (``GapTrajectory``).
4. Evaluate every run on the whole test split (n = 1,000) with :func:`featgap.evaluate.evaluate`:
   clean, PGD-20 (CE and margin), AutoAttack and the sanity checks' attacks; ``robust`` is the
   per-image worst case over all of them. On the strongest adversarial example per image
   (:func:`featgap.evaluate.strongest_examples`) measure the feature gap on ``z`` (the pooled
   feature) and on ``f1 = D1·z`` (AFD's intrinsic feature; ``f1 = z`` for vAFT, which has no
   disentangler), as l2, rel_l2 and 1 − cos, and the local Lipschitz constant of the logits
   (Yang et al. 2020's setting).
5. Write ``docs/results.md``: every accuracy with a 95 % interval (Wilson on n, widened by the
   seed spread: ``results_file.interval``); a verdict says "yes" only when the intervals separate.

Finished runs and evaluations in ``--out`` are reused, so an interrupted experiment continues
where it stopped, and rerunning with fewer ``--seeds`` writes the results of those seeds only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("FEATGAP_PROGRESS", "0")

import torch  # noqa: E402

from featgap import data, runs  # noqa: E402
from featgap.evaluate import evaluate  # noqa: E402
from featgap.methods.afd import load_student  # noqa: E402
from featgap.presets import preset  # noqa: E402
from featgap.probes import load_trajectory, local_lipschitz, pairwise_gap  # noqa: E402
from featgap.train import TrainConfig, Trainer  # noqa: E402
from results_file import compare, interval, seed_interval, train_seconds, write_section  # noqa: E402

VAL_FRACTION = 0.2
NATURAL = TrainConfig(dataset="mnist5k", model="smallcnn", method="standard", epochs=4, lr=0.05, monitor_n=200,
                      val_fraction=VAL_FRACTION)
"""The natural start: trained on the training part of the seed-0 validation split only."""
VARIANTS = {"vaft": ("vaft", {}), "afd": ("afd", {"update": "summed"}), "afd_two_step": ("afd", {"update": "two_step"})}
"""Variant → (method, options added to its preset's)."""
LABELS = {"vaft": "vAFT", "afd": "AFD (summed)", "afd_two_step": "AFD (two-step)"}
PAPER = "ResNet-18, CIFAR-10 (paper Table 1): AFD 84.88 / 52.70 / 47.40, vAFT 83.93 / 51.40 / 45.48 (clean / PGD / AA)"
GAP_METRICS = ("l2", "rel_l2", "cosine")
BEFORE = {  # docs/results.md at commit 8219393 (n = 500, CE-PGD only, natural model trained on all 4,000 digits)
    "vaft": "97.7 ± 0.2 / 86.9 ± 0.9 / 83.6 ± 1.2", "afd": "96.7 ± 0.2 / 85.9 ± 0.3 / 81.0 ± 0.2"}

COLLAPSED_BELOW = 20.0
"""Clean accuracy (%) under which a run counts as collapsed to chance (10 % on ten classes)."""

EPOCHS: int | None = None
"""``--quick``: 1 epoch for every run (the pipeline only)."""
FINISHED_ONLY = False
"""``--finished-only``: train and evaluate nothing; write the results of what is finished in ``--out``."""
AUTOATTACK = True
"""``--no-autoattack``: evaluate without AutoAttack (its own eval file; the tables say so)."""


def train(cfg: TrainConfig, out: Path) -> bool:
    """Train ``cfg`` into ``out`` unless finished there already; False if it is not (``--finished-only``)."""
    if (out / runs.SUMMARY).exists():
        print(f"reusing {out}", flush=True)
        return True
    if FINISHED_ONLY:
        return False
    start = time.perf_counter()
    Trainer(cfg, out=out).fit()
    print(f"trained {out} in {time.perf_counter() - start:.0f} s", flush=True)
    return True


def config_for(variant: str, natural: Path, seed: int, **changes: object) -> TrainConfig:
    """The fine-tuning run of ``variant``: its preset, from ``natural``, on the training part only."""
    method, options = VARIANTS[variant]
    values = {**preset(f"mnist5k-smallcnn-{method}"), "init": str(natural), "seed": seed,
              "val_fraction": VAL_FRACTION, **changes}
    values["extra"] = {**values.get("extra", {}), **options}
    if EPOCHS is not None:
        values["epochs"] = EPOCHS
    return TrainConfig(**values)


def run_dir(out: Path, variant: str, lr: float, seed: int) -> Path:
    return out / f"{variant}-lr{lr:g}-s{seed}"


def tune(out: Path, natural: Path, lrs: list[float], variants: list[str]) -> tuple[dict[str, float], list[str]]:
    """Best lr per variant by worst-case PGD-10 accuracy on the validation split (last epoch), seed 0.

    Ties go to the higher clean accuracy, then the higher lr. The runs are the seed-0 runs.
    """
    best: dict[str, float] = {}
    lines = ["| variant | lr | val clean % | val PGD-10 (CE and margin) % | train s |", "| --- | --- | --- | --- | --- |"]
    for variant in variants:
        scores = []
        for lr in lrs:
            run = run_dir(out, variant, lr, 0)
            if not train(config_for(variant, natural, 0, lr=lr), run):
                lines.append(f"| {LABELS[variant]} | {lr:g} | not finished in the time box | | |")
                continue
            last = runs.read_metrics(run)[-1]
            scores.append((last["monitor_pgd_acc"], last["monitor_clean_acc"], lr))
            lines.append(f"| {LABELS[variant]} | {lr:g} | {last['monitor_clean_acc']:.1f} | "
                         f"{last['monitor_pgd_acc']:.1f} | {train_seconds(run):.0f} |")
        if scores:
            best[variant] = max(scores)[2]
    return best, lines


def features_fn(variant: str, run: Path, model: torch.nn.Module):  # noqa: ANN201 - x -> (z, f1)
    """``x ↦ (z, f1)``: AFD's student gives ``f1 = D1·z``; a model without a disentangler has ``f1 = z``."""
    if variant.startswith("afd"):
        student = load_student(str(run))
        return lambda x: (lambda c: (c["z"], c["f1"]))(student.components(x))
    return lambda x: (model.features(x),) * 2


def measure(variant: str, run: Path, test: data.ImageSet, n: int) -> dict | None:
    """evaluate() plus the feature gaps on z and f1 and the logits' local Lipschitz constant, cached in the run
    (``None`` under ``--finished-only`` when the run has no evaluation yet)."""
    path = runs.eval_path(run, n=min(n, len(test)), autoattack=AUTOATTACK)  # featgap eval's naming
    if path.exists():
        return runs.read_json(path)
    if FINISHED_ONLY:
        return None
    model = runs.load(run)
    start = time.perf_counter()
    result = evaluate(model, test, n=n if n < len(test) else None, seed=0, keep_examples=True, autoattack=AUTOATTACK)
    x, y = (test.stratified_subset(n, 0) if n < len(test) else test).tensors()
    x_adv = result.examples
    feats = features_fn(variant, run, model)
    gap: dict[str, dict[str, float]] = {"z": {}, "f1": {}}
    with torch.no_grad():
        (z, f1), (z_adv, f1_adv) = feats(x), feats(x_adv)
    for name, nat, adv in (("z", z, z_adv), ("f1", f1, f1_adv)):
        gap[name] = {k: v.mean().item() for k, v in pairwise_gap(nat, adv).items() if k in GAP_METRICS}
    lip = local_lipschitz(model, x, y, layers="logits", eps=test.info.eps, steps=10, seed=0)["lipschitz"]
    record = {**result.as_dict(), "gap_on_strongest": gap, "lipschitz_logits": float(lip.mean()),
              "eval_seconds": time.perf_counter() - start}
    runs.write_json(path, record)
    print(f"evaluated {run} in {record['eval_seconds']:.0f} s", flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/afd_experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=1000, help="test images for every measurement (default: all 1,000)")
    parser.add_argument("--tune", action="store_true", help="choose each variant's lr on the validation split first")
    parser.add_argument("--tune-lrs", type=float, nargs="+", default=[0.02, 0.04, 0.08])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--results", default="docs/results.md")
    parser.add_argument("--section", default="afd",
                        help="the section of --results to write (e.g. afd_aa for a run with other settings; "
                             "each section keeps the command that produced it)")
    parser.add_argument("--quick", action="store_true", help="1 epoch per run: checks the pipeline, numbers meaningless")
    parser.add_argument("--finished-only", action="store_true",
                        help="train and evaluate nothing: write the results of the runs already finished and evaluated")
    parser.add_argument("--no-autoattack", action="store_true",
                        help="evaluate without AutoAttack (minutes instead of an hour per model on a loaded CPU)")
    parser.add_argument("--train-only", action="store_true",
                        help="train (tuning runs, then every seed) and evaluate nothing; pair with --evaluate-only")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="train nothing: wait for each variant's tuning runs, then evaluate its runs as they finish "
                             "(a second process next to --train-only)")
    args = parser.parse_args()
    global EPOCHS, FINISHED_ONLY, AUTOATTACK
    EPOCHS = 1 if args.quick else None
    FINISHED_ONLY = args.finished_only
    AUTOATTACK = not args.no_autoattack
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    out = Path(args.out)
    natural = out / "natural"
    train(TrainConfig(**{**NATURAL.as_dict(), **({"epochs": 1} if args.quick else {})}), natural)
    if args.evaluate_only:
        evaluate_only(args, out, natural)
        return
    if args.tune:
        lrs, tuning = tune(out, natural, args.tune_lrs, args.variants)
    else:
        lrs, tuning = {v: preset(f"mnist5k-smallcnn-{VARIANTS[v][0]}")["lr"] for v in VARIANTS}, None
    test = data.load("mnist5k", "test")
    rows: dict[str, list[dict]] = {v: [] for v in args.variants}
    missing: list[str] = []
    for seed in args.seeds:  # seed-major: a stopped experiment has whole seeds done
        for variant in args.variants:
            if variant not in lrs:
                missing.append(f"{LABELS[variant]} (no tuning run finished)")
                continue
            run = run_dir(out, variant, lrs[variant], seed)
            trained = train(config_for(variant, natural, seed, lr=lrs[variant]), run)
            if args.train_only:
                continue
            record = measure(variant, run, test, args.n) if trained else None
            if record is None:
                missing.append(f"{LABELS[variant]} seed {seed}")
            else:
                rows[variant].append({"run": run, **record})
    if args.train_only:
        return
    rows = {v: rs for v, rs in rows.items() if rs}
    natural_record = measure("natural", natural, test, args.n)
    text = results_text(args, lrs, rows, natural_record, tuning, sorted(set(missing)))
    write_section(args.results, args.section, text)
    print(text)


def evaluate_only(args: argparse.Namespace, out: Path, natural: Path, poll_s: float = 20.0) -> None:
    """``--evaluate-only``: evaluate, seed by seed and variant by variant, every run at the lr its tuning
    runs chose, waiting for runs that another process (``--train-only``) is still training."""
    test = data.load("mnist5k", "test")

    def finished(run: Path) -> bool:
        return (run / runs.SUMMARY).exists()

    for seed in args.seeds:
        for variant in args.variants:
            tuning_runs = [run_dir(out, variant, lr, 0) for lr in args.tune_lrs]
            while not all(map(finished, tuning_runs)):
                time.sleep(poll_s)
            lr = max((runs.read_metrics(r)[-1]["monitor_pgd_acc"], runs.read_metrics(r)[-1]["monitor_clean_acc"], lr)
                     for r, lr in zip(tuning_runs, args.tune_lrs))[2]
            run = run_dir(out, variant, lr, seed)
            while not finished(run):
                time.sleep(poll_s)
            measure(variant, run, test, args.n)
    measure("natural", natural, test, args.n)


def results_text(args: argparse.Namespace, lrs: dict[str, float], rows: dict[str, list[dict]], natural: dict | None,
                 tuning: list[str] | None, missing: list[str] = ()) -> str:
    variants = list(rows)
    n = rows[variants[0]][0]["n"]
    acc_cols = (("clean", "clean"), ("pgd", "PGD-20 (worst of CE, margin)"), ("pgd_ce", "PGD-20 (CE)"),
                ("autoattack", "AutoAttack"), ("robust", "robust (every attack)"), ("avg", "Avg (worst-case PGD)"),
                ("avg_paper", "Avg (paper: CE-PGD)"))
    acc_cols = tuple((c, label) for c, label in acc_cols if all(r.get(c) is not None for v in variants for r in rows[v]))
    acc = {v: {c: interval([r[c] for r in rows[v]], n) for c, _ in acc_cols} for v in variants}
    nat = {c: interval([natural[c]], n) for c, _ in acc_cols} if natural else None
    seeds = {v: len(rows[v]) for v in variants}

    def label(v: str) -> str:
        return f"{LABELS[v]} ({seeds[v]} seed{'s' if seeds[v] > 1 else ''})"

    mean = statistics.mean

    def sec(v: str, key: str) -> str:
        vals = [train_seconds(r["run"]) if key == "train" else r["eval_seconds"] for r in rows[v]]
        return f"{mean(vals):.0f}"

    timing = "; ".join(f"{LABELS[v]} {sec(v, 'train')} s training + {sec(v, 'eval')} s evaluation" for v in variants)
    out = Path(args.out)
    every_run = [d for d in sorted(out.iterdir()) if (d / runs.SUMMARY).exists()]
    evals = [runs.read_json(f)["eval_seconds"] for d in every_run for f in d.glob("eval-n*.json")]
    timing += (f". In all, {len(every_run)} finished runs in `{args.out}/` (natural start and tuning runs included) "
               f"took {sum(map(train_seconds, every_run)) / 60:.0f} min of training and {len(evals)} evaluations "
               f"{sum(evals) / 60:.0f} min")
    lines = [
        f"## AFD vs vAFT on mnist5k (CPU): {'AutoAttack' if AUTOATTACK else 'PGD only'}, "
        f"seed{'s' if len(args.seeds) > 1 else ''} {', '.join(map(str, args.seeds))}, n = {n}", "",
        f"Produced by `python benchmarks/afd_vs_vaft.py{' --tune --tune-lrs ' + ' '.join(f'{x:g}' for x in args.tune_lrs) if tuning else ''}"
        f"{' --no-autoattack' if not AUTOATTACK else ''}{f' --n {args.n}' if args.n != 1000 else ''} --seeds "
        f"{' '.join(map(str, args.seeds))}{f' --section {args.section}' if args.section != 'afd' else ''}` "
        f"on 2 shared CPU cores, one thread; runs in `{args.out}/`. "
        f"Wall-clock seconds per run (mean over seeds): {timing}.", "",
        f"Setting: smallcnn, mnist5k, L∞ ε = 0.3. The natural start (standard training, 4 epochs) saw only the "
        f"3,200 training digits outside the validation split; the learning rates were chosen on the other 800 "
        f"({'table below' if tuning else 'preset values, not tuned in this run'}): "
        + ", ".join(f"{LABELS[v]} {lrs[v]:g}" for v in variants)
        + f". Each variant fine-tunes that model for 10 epochs on 3,200 training digits (each seed holds out its "
        f"own 800; the seed-0 run at the chosen lr is the tuning run), seeds {args.seeds}. Evaluation on "
        f"{'all' if n >= 1000 else 'a stratified subset of'} n = {n} test images.", "",
        f"### Accuracy (%, mean ± std over seeds [95 % interval])", "",
        "The interval is the Wilson score interval of the mean on n test images, widened by the 95 % t-interval "
        "of the seed mean (`benchmarks/results_file.py`, `interval`). PGD is the per-image worst of CE- and "
        "margin-PGD; robust is the per-image worst over every attack run (both PGDs, AutoAttack's four, and the "
        "sanity checks' attacks at radius ≤ ε); Avg = (clean + PGD + AA) / 3."
        + ("" if AUTOATTACK else " **AutoAttack was not run** (`--no-autoattack`): there is no AutoAttack, robust or "
           "Avg column, and PGD is an upper bound on the robust accuracy that AutoAttack would measure (earlier runs "
           "here lost 3–4 more points to it)."), "",
        "| model | " + " | ".join(label for _, label in acc_cols) + " |",
        "| --- |" + " --- |" * len(acc_cols)]
    if nat:
        lines.append("| natural (start, 1 run) | " + " | ".join(str(nat[c]) for c, _ in acc_cols) + " |")
    for v in variants:
        lines.append(f"| {label(v)} | " + " | ".join(str(acc[v][c]) for c, _ in acc_cols) + " |")
    if missing:
        lines += ["", "**Not finished within the experiment's time box** (left out of every table and verdict): "
                  + ", ".join(missing) + "."]
    collapsed = [f"{LABELS[v]} seed {r['run'].name.rsplit('-s', 1)[1]} (clean {r['clean']:.1f} %)"
                 for v in variants for r in rows[v] if r["clean"] < COLLAPSED_BELOW]
    if collapsed:
        lines += ["", f"**Collapsed to chance** (clean accuracy below {COLLAPSED_BELOW:g} %): {', '.join(collapsed)}. "
                  "A collapse is an outcome of the method at that setting, so every table and verdict includes it."]
    if any(len(rows[m]) < 2 for m in rows if rows[m]):
        lines += ["", "A model with **one seed** has an interval for the test sample only: it says nothing about how "
                  "much another training run would differ (earlier runs here differed by up to a few points, and "
                  "MNIST adversarial training at ε = 0.3 sometimes collapses to chance), so a separation at one "
                  "seed is weaker evidence than it looks."]
    lines += ["", f"Paper, {PAPER}.", "",
              "### Feature gap on the strongest adversarial example per test image (mean over n images; "
              f"mean ± std over seeds [95 % t-interval])", "",
              "The strongest example per image is the one of CE-PGD-20, margin-PGD-20"
              + (" and AutoAttack" if AUTOATTACK else " (AutoAttack not run)") + " that the model "
              "misclassifies with the highest cross-entropy, else the one of highest cross-entropy "
              "(`featgap.evaluate.strongest_examples`). z = the pooled penultimate feature (the layer `pool`); "
              "f1 = D1·z, AFD's intrinsic feature, the one its head classifies (vAFT and the natural model have no "
              "disentangler: f1 = z). rel_l2 = ‖a − b‖ / ‖a‖ and 1 − cos do not change when the features are "
              "rescaled, l2 does. Lipschitz = mean over images of max ‖logits(x) − logits(x′)‖₁ / ‖x − x′‖∞ in the "
              "ε-ball (10 ascent steps; layer `logits`, Yang et al. 2020).", "",
              "| model | z: l2 | z: rel_l2 | z: 1 − cos | f1: l2 | f1: rel_l2 | f1: 1 − cos | Lipschitz (logits) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def gap_values(rs: list[dict], feature: str, metric: str) -> list[float]:
        return [r["gap_on_strongest"][feature][metric] for r in rs]

    if natural:
        lines.append("| natural (start) | " + " | ".join(
            f"{natural['gap_on_strongest'][f][m]:.3f}" for f in ("z", "f1") for m in GAP_METRICS)
            + f" | {natural['lipschitz_logits']:.1f} |")
    for v in variants:
        cells = [fmt_seed(gap_values(rows[v], f, m), 3) for f in ("z", "f1") for m in GAP_METRICS]
        cells.append(fmt_seed([r["lipschitz_logits"] for r in rows[v]], 1))
        lines.append(f"| {label(v)} | " + " | ".join(cells) + " |")

    traj = {v: load_trajectory([r["run"] for r in rows[v]]) for v in variants}

    def by_epoch(v: str, metric: str) -> dict[int, list[float]]:
        t = traj[v]
        sel = t[(t["layer"] == "pool") & (t["outcome"] == "all") & (t["metric"] == metric)]
        out: dict[int, list[float]] = {}
        for e, val in zip(sel["epoch"], sel["mean"]):
            out.setdefault(int(e), []).append(float(val))
        return out

    epochs = sorted(by_epoch(variants[0], "linf"))
    lines += ["", "### Feature gap at z over fine-tuning (200 validation digits, PGD-10; mean over seeds)",
              "", "L∞ is the paper's measure (its figure); rel_l2 does not depend on the features' scale.", "",
              "| epoch | " + " | ".join(f"{LABELS[v]} L∞ | {LABELS[v]} rel_l2" for v in variants) + " |",
              "| --- |" + " --- | --- |" * len(variants)]
    per = {v: {m: by_epoch(v, m) for m in ("linf", "rel_l2")} for v in variants}
    for e in epochs:
        lines.append(f"| {e} | " + " | ".join(f"{mean(per[v]['linf'][e]):.3f} | {mean(per[v]['rel_l2'][e]):.3f}"
                                              for v in variants) + " |")
    lines += ["", "Paper (CIFAR-10, ResNet-18, read off its figure, L∞): vAFT rises from ≈0.16 to ≈0.24; AFD from "
              "≈0.135 to ≈0.21, plateauing from about epoch 8."]

    verdicts = []
    for v in (v for v in variants if v != "vaft"):
        if "vaft" not in acc:
            break
        for c, what in (("robust", "robust accuracy (every attack)"), ("autoattack", "AutoAttack accuracy"),
                         ("pgd", "PGD-20 accuracy (worst of CE, margin)"), ("clean", "clean accuracy")):
            if c not in acc[v]:
                continue
            verdicts.append(compare(f"{LABELS[v]}'s {what} is higher than vAFT's", acc[v][c], acc["vaft"][c]))
        for f in ("z", "f1"):
            for m in ("rel_l2", "cosine"):
                a, b = seed_interval(gap_values(rows[v], f, m)), seed_interval(gap_values(rows["vaft"], f, m))
                verdicts.append(compare(f"{LABELS[v]}'s feature gap on {f} ({'1 − cos' if m == 'cosine' else m}) is "
                                        "below vAFT's", a, b, lower=True))
    if "afd" in acc and "afd_two_step" in acc:
        best = "robust" if "robust" in acc["afd"] else "pgd"
        verdicts.append(compare(f"AFD (two-step)'s {'robust' if best == 'robust' else 'PGD-20'} accuracy is higher "
                                "than AFD (summed)'s", acc["afd_two_step"][best], acc["afd"][best]))
    lines += ["", "### Verdicts (computed: \"yes\" only when the 95 % intervals separate)", "", *verdicts]
    lines += ["", "### Before (commit 8219393), for comparison", "",
              "The earlier protocol: natural start trained on all 4,000 training digits (including the 800 "
              "validation digits used to choose the lrs), n = 500 test images, CE-PGD only, no intervals. "
              "Clean / PGD-20 (CE) / AutoAttack: vAFT " + BEFORE["vaft"] + ", AFD (summed) " + BEFORE["afd"]
              + ". Its verdicts (AFD below vAFT on every accuracy, and a larger L∞ feature gap) compared means only."]
    if tuning:
        lines += ["", "### Learning-rate choice on the validation split (seed 0, after the last epoch)", "", *tuning]
    flagged = [f"{r['run'].name}: {c['detail']}" for v in variants for r in rows[v] for c in r.get("checks", [])
               if not c["ok"]]
    lines += ["", "Sanity checks ([evaluation.md](evaluation.md)) flagged: " + ("; ".join(flagged) or "none") + "."]
    for v in (v for v in variants if v.startswith("afd")):
        comp = traj[v]
        comp = comp[(comp["layer"] == "components") & (comp["epoch"] == epochs[-1])]
        if not len(comp):
            continue
        lines += ["", f"### Inside {LABELS[v]} at the last epoch (mean over seeds, 200 validation digits)", "",
                  "| input | ‖f1‖ | ‖f2‖ | cos(f1, f2) | confused head predicts ŷc |", "| --- | --- | --- | --- | --- |"]
        for outcome, label in (("nat", "natural"), ("adv", "PGD-10")):
            value = {m: mean(float(x) for x, o, mm in zip(comp["mean"], comp["outcome"], comp["metric"])
                             if o == outcome and mm == m) for m in ("f1_norm", "f2_norm", "cos_f1_f2", "conf_hit")}
            lines.append(f"| {label} | {value['f1_norm']:.2f} | {value['f2_norm']:.2f} | {value['cos_f1_f2']:.3f} | "
                         f"{100 * value['conf_hit']:.1f} % |")
    lines.append("")
    return "\n".join(lines)


def fmt_seed(values: list[float], digits: int) -> str:
    i = seed_interval(values)
    if i.seeds < 2:
        return f"{i.mean:.{digits}f}"
    return f"{i.mean:.{digits}f} ± {i.std:.{digits}f} [{i.low:.{digits}f}, {i.high:.{digits}f}]"


if __name__ == "__main__":
    main()
