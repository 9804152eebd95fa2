"""The AFD experiment on a CPU: vAFT vs AFD from one natural smallcnn, several seeds, mnist5k.

    python benchmarks/afd_vs_vaft.py                       # writes docs/results.md (~20 min, 2 cores)
    python benchmarks/afd_vs_vaft.py --tune                # validation-split sweep first (adds ~10 min)

1. Train one natural (standard) smallcnn on mnist5k's training split.
2. From it, fine-tune with the ``mnist5k-smallcnn-vaft`` and ``mnist5k-smallcnn-afd`` presets,
   one run per seed. Every epoch records the feature gap at the pooled penultimate layer on a
   fixed test subset (``GapTrajectory``), L∞ as the AFD paper plots it.
3. Evaluate every run on the test split: clean, PGD-20 and standard AutoAttack (ε = 0.3).
4. Write ``docs/results.md``: mean ± std over seeds, the gap trajectories, and the paper's
   CIFAR-10 claim next to what happened here — the verdicts are computed, not written in.

``--tune`` first sweeps AFD's and vAFT's learning rate on a validation split carved from the
training data (``val_fraction=0.2``, one seed, PGD-10 accuracy on the validation images) and
uses the best one for each method; the test split is never looked at while choosing.
Finished runs in ``--out`` are reused, so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("FEATGAP_PROGRESS", "0")

from featgap import data, runs  # noqa: E402
from featgap.evaluate import evaluate  # noqa: E402
from featgap.presets import preset  # noqa: E402
from featgap.probes import load_trajectory  # noqa: E402
from featgap.train import TrainConfig, Trainer  # noqa: E402
from results_file import mean_std, train_seconds, write_section  # noqa: E402

NATURAL = TrainConfig(dataset="mnist5k", model="smallcnn", method="standard", epochs=4, lr=0.05, monitor_n=200)
METHODS = ("vaft", "afd")
PAPER = "ResNet-18, CIFAR-10 (paper Table 1): AFD 84.88 / 52.70 / 47.40, vAFT 83.93 / 51.40 / 45.48 (clean / PGD / AA)"


def train(cfg: TrainConfig, out: Path) -> None:
    if (out / runs.SUMMARY).exists():
        print(f"reusing {out}")
        return
    start = time.perf_counter()
    Trainer(cfg, out=out).fit()
    print(f"trained {out} in {time.perf_counter() - start:.0f} s")


EPOCHS: int | None = None


def config_for(method: str, natural: Path, seed: int, **changes: object) -> TrainConfig:
    values = {**preset(f"mnist5k-smallcnn-{method}"), "init": str(natural), "seed": seed, **changes}
    if EPOCHS is not None:
        values["epochs"] = EPOCHS
    return TrainConfig(**values)


def tune(out: Path, natural: Path, lrs: list[float]) -> dict[str, float]:
    """Best lr per method by PGD accuracy on the validation split (last epoch), one seed."""
    best: dict[str, float] = {}
    lines = ["| method | lr | val clean % | val PGD-10 % |", "| --- | --- | --- | --- |"]
    for method in METHODS:
        scores = []
        for lr in lrs:
            run = out / "tune" / f"{method}-lr{lr:g}"
            train(config_for(method, natural, 0, lr=lr, val_fraction=0.2, probe_n=0), run)
            last = runs.read_metrics(run)[-1]
            scores.append((last["monitor_pgd_acc"], lr))
            lines.append(f"| {method} | {lr:g} | {last['monitor_clean_acc']:.1f} | {last['monitor_pgd_acc']:.1f} |")
        best[method] = max(scores)[1]
    (out / "tuning.md").write_text("\n".join(lines) + "\n")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/afd_experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=1000, help="test images for clean/PGD-20/AutoAttack (default all)")
    parser.add_argument("--tune", action="store_true", help="choose each method's lr on a validation split first")
    parser.add_argument("--tune-lrs", type=float, nargs="+", default=[0.005, 0.01, 0.02])
    parser.add_argument("--results", default="docs/results.md")
    parser.add_argument("--epochs", type=int, default=None, help="override the presets' epochs (a quick look only)")
    args = parser.parse_args()
    global EPOCHS
    EPOCHS = args.epochs
    out = Path(args.out)
    natural = out / "natural"
    train(NATURAL, natural)
    lrs = tune(out, natural, args.tune_lrs) if args.tune else {m: preset(f"mnist5k-smallcnn-{m}")["lr"] for m in METHODS}
    test = data.load("mnist5k", "test")
    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    for seed in args.seeds:
        for method in METHODS:
            run = out / f"{method}-lr{lrs[method]:g}-s{seed}"
            train(config_for(method, natural, seed, lr=lrs[method]), run)
            result_file = run / f"eval-n{args.n}.json"
            if not result_file.exists():
                result = evaluate(runs.load(run), test, n=args.n if args.n < len(test) else None, seed=0)
                runs.write_json(result_file, result.as_dict())
            rows[method].append({"run": run, **runs.read_json(result_file)})
    natural_eval = natural / f"eval-n{args.n}.json"
    if not natural_eval.exists():
        runs.write_json(natural_eval, evaluate(runs.load(natural), test, n=args.n if args.n < len(test) else None,
                                               seed=0).as_dict())
    write_results(Path(args.results), args, lrs, rows, runs.read_json(natural_eval),
                  (out / "tuning.md").read_text() if args.tune else None)


def write_results(path: Path, args: argparse.Namespace, lrs: dict[str, float], rows: dict[str, list[dict]],
                  natural: dict, tuning: str | None) -> None:
    for r in [natural, *(r for m in METHODS for r in rows[m])]:
        r.setdefault("pgd_ce", r["pgd"])  # a record from before the worst-case protocol: its pgd is CE-PGD alone
    cols = ("clean", "pgd_ce", "autoattack")
    summary = {m: {c: [r[c] for r in rows[m]] for c in cols} for m in METHODS}
    for m in METHODS:  # the paper's Avg: CE-PGD-20, as the paper evaluates
        summary[m]["avg"] = [(r["clean"] + r["pgd_ce"] + r["autoattack"]) / 3 for r in rows[m]]
    traj = {m: load_trajectory([r["run"] for r in rows[m]]) for m in METHODS}

    def gap_by_epoch(method: str, metric: str = "linf") -> dict[int, list[float]]:
        t = traj[method]
        sel = t[(t["layer"] == "pool") & (t["outcome"] == "all") & (t["metric"] == metric)]
        by: dict[int, list[float]] = {}
        for e, v in zip(sel["epoch"], sel["mean"]):
            by.setdefault(int(e), []).append(float(v))
        return by

    gaps = {m: gap_by_epoch(m) for m in METHODS}
    epochs = sorted(gaps["afd"])
    last = epochs[-1]
    mean = statistics.mean
    verdicts = [
        ("AFD's feature gap (L∞, last epoch) is below vAFT's", mean(gaps["afd"][last]) < mean(gaps["vaft"][last])),
        ("AFD's PGD-20 accuracy is higher than vAFT's", mean(summary["afd"]["pgd_ce"]) > mean(summary["vaft"]["pgd_ce"])),
        ("AFD's AutoAttack accuracy is higher than vAFT's",
         mean(summary["afd"]["autoattack"]) > mean(summary["vaft"]["autoattack"])),
        ("AFD's clean accuracy is higher than vAFT's", mean(summary["afd"]["clean"]) > mean(summary["vaft"]["clean"])),
    ]
    n = rows["afd"][0]["n"]
    lines = [
        "## AFD vs vAFT on mnist5k (CPU)",
        "",
        f"Produced by `python benchmarks/afd_vs_vaft.py{' --tune' if tuning else ''}` "
        f"on 2 CPU cores; runs in `{args.out}/`. Training took {mean_std([train_seconds(r['run']) for r in rows['vaft']], 0)} s "
        f"per vAFT run and {mean_std([train_seconds(r['run']) for r in rows['afd']], 0)} s per AFD run "
        "(10 epochs, mean ± std over seeds); each evaluation (PGD-20 + AutoAttack) took a few minutes.",
        "",
        f"Setting: smallcnn, mnist5k (4,000 train / 1,000 test real MNIST digits), L∞ ε = 0.3. One natural "
        f"model (standard training, 4 epochs) is fine-tuned by each method with seeds {args.seeds}, using the "
        f"`mnist5k-smallcnn-vaft` / `-afd` presets (lr vAFT {lrs['vaft']:g}, AFD {lrs['afd']:g}). "
        f"Evaluation on n = {n} test images: clean, PGD-20 (step 2.5·ε/20, random start) and standard AutoAttack.",
        "",
        "### Accuracy (%, mean ± std over seeds)",
        "",
        "| model | clean | PGD-20 (CE) | AutoAttack | Avg (paper: CE-PGD) |",
        "| --- | --- | --- | --- | --- |",
        f"| natural (start) | {natural['clean']:.1f} | {natural['pgd_ce']:.1f} | {natural['autoattack']:.1f} | "
        f"{(natural['clean'] + natural['pgd_ce'] + natural['autoattack']) / 3:.1f} |",
    ]
    for m in METHODS:
        s = summary[m]
        lines.append(f"| {m} | {mean_std(s['clean'])} | {mean_std(s['pgd_ce'])} | {mean_std(s['autoattack'])} | "
                     f"{mean_std(s['avg'])} |")
    lines += ["", f"Paper, {PAPER}.", "",
              "### Feature gap over fine-tuning (L∞ at the pooled penultimate layer, mean over 200 test images)", "",
              "| epoch | vAFT | AFD |", "| --- | --- | --- |"]
    for e in epochs:
        lines.append(f"| {e} | {mean_std(gaps['vaft'][e], 3)} | {mean_std(gaps['afd'][e], 3)} |")
    lines += ["", "Paper (CIFAR-10, ResNet-18, read off its figure): vAFT rises from ≈0.16 to ≈0.24; AFD from ≈0.135 "
              "to ≈0.21, plateauing from about epoch 8.", "", "### Verdicts (computed from the numbers above)", ""]
    lines += [f"- {text}: **{'yes' if ok else 'no'}**" for text, ok in verdicts]
    if tuning:
        lines += ["", "### Learning-rate choice on the validation split (seed 0, last epoch)", "", tuning.strip()]
    flagged = [f"{r['run'].name}: {c['detail']}" for m in METHODS for r in rows[m] for c in r.get("checks", [])
               if not c["ok"]]
    lines += ["", "Sanity checks ([evaluation.md](evaluation.md)) flagged: " + ("; ".join(flagged) or "none") + "."]
    if flagged:
        lines += ["A flag that Square lowered accuracy after the white-box attacks is a mild sign of gradient masking "
                  "(APGD's gradients miss some points a black-box search finds); the AutoAttack column already "
                  "includes Square, so it is the honest number."]
    lines += ["", "### Inside AFD at the last epoch (mean over seeds, 200 test images)", "",
              "| input | ‖f1‖ | ‖f2‖ | cos(f1, f2) | confused head predicts ŷc |", "| --- | --- | --- | --- | --- |"]
    comp = traj["afd"]
    comp = comp[(comp["layer"] == "components") & (comp["epoch"] == last)]
    inside = {}
    for outcome, label in (("nat", "natural"), ("adv", "PGD-10")):
        inside[outcome] = value = {
            metric: statistics.mean(float(v) for v, o, mm in zip(comp["mean"], comp["outcome"], comp["metric"])
                                    if o == outcome and mm == metric)
            for metric in ("f1_norm", "f2_norm", "cos_f1_f2", "conf_hit")}
        lines.append(f"| {label} | {value['f1_norm']:.2f} | {value['f2_norm']:.2f} | {value['cos_f1_f2']:.3f} | "
                     f"{100 * value['conf_hit']:.1f} % |")
    if not all(ok for _, ok in verdicts):
        lines += ["", "### What was checked, since AFD does not beat vAFT here", "",
                  "- Both methods' learning rates were chosen on the validation split (table above), so neither "
                  "runs at a setting tuned for the other.",
                  "- AFD's gradient routing ([methods/afd.md](methods/afd.md): D2 learns only from the confused loss; backbone and D1 from the "
                  "elimination and main terms; the head from confused + main) is checked term by term by "
                  "`tests/test_afd.py`, and the exported model's logits equal the student's.",
                  f"- What the disentangler does (table above): the confused head predicts ŷc on "
                  f"{100 * inside['adv']['conf_hit']:.0f} % of adversarial and {100 * inside['nat']['conf_hit']:.0f} % "
                  f"of natural inputs, and cos(f1, f2) ends at {inside['adv']['cos_f1_f2']:.2f} on adversarial inputs"
                  + (": at the paper's β the elimination term barely separates f1 from f2 in this setting."
                     if inside["adv"]["cos_f1_f2"] > 0.5 else "."),
                  "- What differs from the paper: smallcnn on 4,000 MNIST digits at ε = 0.3, 10 short epochs, "
                  "not ResNet-18 on CIFAR-10 at 8/255; the loss weights α, β, γ are the paper's CIFAR-10 values, "
                  "not tuned here."]
    lines.append("")
    write_section(path, "afd", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
