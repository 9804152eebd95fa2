"""Two evaluations with AutoAttack: one after the other with 2 threads, or side by side on 2 worker processes.

    python benchmarks/bench_jobs.py RUN_A RUN_B [--n 100] [--repeats 2]

Why :mod:`featgap.jobs` exists: ``featgap demo`` and the tutorials evaluate several small models
with AutoAttack, whose FAB-T and Square attacks make thousands of small passes (a few dozen
digits through smallcnn); on a CPU such work is bound by per-operation overhead, which a second
thread barely shortens and a second process halves. This script measures that claim on two
finished runs (e.g. ``runs/demo/pgd_at`` and ``runs/demo/vaft``), alternating the two ways
``--repeats`` times, and writes ``benchmarks/results/jobs_cpu.json`` (medians, every value, the
load average, versions, the command). Results are identical both ways (same seed per run); the
script checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("FEATGAP_PROGRESS", "0")

import torch  # noqa: E402

from featgap import data, runs  # noqa: E402
from featgap.evaluate import evaluate  # noqa: E402
from featgap.jobs import Job, run_jobs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def evaluate_run(run: str, n: int) -> dict:
    """One evaluation (PGD-20 CE and margin, AutoAttack, the sanity checks) of ``run`` on ``n`` test digits."""
    result = evaluate(runs.load(run), data.load(runs.read_settings(run)["dataset"], "test"), n=n, seed=0)
    return {"robust": result.robust, "autoattack": result.autoattack, "seconds": result.seconds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs=2, help="two finished run directories")
    p.add_argument("--n", type=int, default=100, help="test digits per evaluation (default 100)")
    p.add_argument("--repeats", type=int, default=2, help="rounds of each way, alternated (default 2)")
    args = p.parse_args()
    times: dict[str, list[float]] = {"sequential, 2 threads": [], "2 workers x 1 thread": []}
    loads, outcomes = [], {}
    for r in range(args.repeats):
        order = list(times) if r % 2 == 0 else list(reversed(times))
        for way in order:
            start = time.perf_counter()
            if way.startswith("sequential"):
                torch.set_num_threads(2)
                got = {run: evaluate_run(run, args.n) for run in args.runs}
            else:
                got = run_jobs({run: Job(evaluate_run, (run, args.n)) for run in args.runs}, workers=2, threads=1)
            times[way].append(time.perf_counter() - start)
            loads.append(os.getloadavg()[0])
            outcomes.setdefault(way, []).append({k: (v["robust"], v["autoattack"]) for k, v in got.items()})
            print(f"round {r + 1}, {way}: {times[way][-1]:.1f} s  {outcomes[way][-1]}", flush=True)
    first = outcomes["sequential, 2 threads"][0]
    same = all(o == first for v in outcomes.values() for o in v)
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["sequential, 2 threads"] / medians["2 workers x 1 thread"]
    print(f"medians: {medians}; sequential / side by side = {ratio:.2f}x; same accuracies both ways: {same}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "jobs_cpu.json"
    out.write_text(json.dumps({
        "benchmark": "bench_jobs", "command": "python benchmarks/bench_jobs.py " + " ".join(sys.argv[1:]),
        "device": "cpu", "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
        "environment": runs.environment_info(), "n": args.n, "runs": args.runs,
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "median_seconds": {k: round(v, 2) for k, v in medians.items()}, "ratio_sequential_over_workers": round(ratio, 3),
        "loadavg_1min": [round(x, 2) for x in loads], "same_accuracies": same, "accuracies": outcomes}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
