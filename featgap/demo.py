"""``featgap demo``: the whole story in a few minutes on a laptop CPU.

1. Train ``smallcnn`` on the bundled MNIST digits (``mnist5k``) with standard training.
2. Train the same architecture with PGD adversarial training (ε = 0.3, ε ramped up over the
   first two epochs, which MNIST PGD-AT needs to get started).
3. Evaluate both on a stratified subset of the test split: clean, PGD-20 and standard
   AutoAttack accuracy, with the sanity checks of EVALUATION.md.
4. Print a table with the **feature gap** of each model: how far the features of an input and
   of its PGD-20 example lie apart. The robust model's gap is several times smaller.

Finished runs in ``--out`` are reused (``--fresh`` retrains), so the demo can be rerun to look
at the table again.
"""

from __future__ import annotations

import time
from pathlib import Path

from featgap import data, runs
from featgap.evaluate import EvalResult, evaluate
from featgap.train import TrainConfig, Trainer, resolve_device

DEMO_RUNS: dict[str, TrainConfig] = {
    "standard": TrainConfig(dataset="mnist5k", model="smallcnn", method="standard", epochs=4, lr=0.05,
                            batch_size=128, monitor_n=200),
    "pgd_at": TrainConfig(dataset="mnist5k", model="smallcnn", method="pgd_at", epochs=8, lr=0.05,
                          batch_size=128, eps_warmup_epochs=2, attack_steps=10, monitor_n=200),
}


def _train_or_reuse(name: str, cfg: TrainConfig, out: Path, fresh: bool) -> None:
    run_dir = out / name
    if (run_dir / runs.SUMMARY).exists():
        if not fresh:
            print(f"[{name}] reusing the finished run in {run_dir} (use --fresh to retrain)")
            return
        import shutil

        shutil.rmtree(run_dir)
    start = time.perf_counter()
    Trainer(cfg, out=run_dir).fit()
    print(f"[{name}] trained {cfg.epochs} epochs in {time.perf_counter() - start:.0f} s → {run_dir}")


def format_table(results: dict[str, EvalResult]) -> str:
    """The demo's table: accuracies (%) and the mean feature gap under PGD-20."""
    head = f"{'model':10} {'clean':>6} {'PGD-20':>7} {'AA':>6} {'avg':>6} │ {'gap L2':>7} {'gap L∞':>7} {'gap cos':>8}"
    lines = [head, "─" * len(head)]
    for name, r in results.items():
        aa = f"{r.autoattack:6.1f}" if r.autoattack is not None else f"{'–':>6}"
        avg = f"{r.avg:6.1f}" if r.avg is not None else f"{'–':>6}"
        g = r.feature_gap
        lines.append(f"{name:10} {r.clean:6.1f} {r.pgd:7.1f} {aa} {avg} │ {g.get('l2', float('nan')):7.3f} "
                     f"{g.get('linf', float('nan')):7.3f} {g.get('cosine', float('nan')):8.4f}")
    return "\n".join(lines)


def run_demo(out: str | Path = "runs/demo", n: int = 500, device: str = "auto", seed: int = 0,
             fresh: bool = False) -> dict[str, EvalResult]:
    """Train, evaluate and print; returns the evaluation results by run name."""
    from featgap.errors import FeatgapError

    if n < 10:
        raise FeatgapError(f"--n must be at least 10; got {n}")
    out = Path(out)
    start = time.perf_counter()
    for name, cfg in DEMO_RUNS.items():
        _train_or_reuse(name, TrainConfig(**{**cfg.as_dict(), "device": device, "seed": seed}), out, fresh)
    test = data.load("mnist5k", "test")
    results: dict[str, EvalResult] = {}
    for name in DEMO_RUNS:
        model = runs.load(out / name, device=resolve_device(device))
        results[name] = evaluate(model, test, n=n, seed=seed)
        runs.write_json(out / name / "eval.json", results[name].as_dict())
    print()
    print(f"mnist5k test subset: n = {results['standard'].n} (stratified, seed {seed}), "
          f"L∞ ε = {test.info.eps}, smallcnn")
    print(format_table(results))
    print()
    for name, r in results.items():
        flagged = r.flags
        print(f"sanity checks, {name}: {len(r.checks) - len(flagged)}/{len(r.checks)} passed"
              + "".join(f"\n  FLAG {c.name}: {c.detail}" for c in flagged))
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; runs in {out}/")
    return results

