"""One PGD-AT epoch of smallcnn on mnist5k with 1 vs 2 torch threads, as the machine is and with one core made busy.

    python benchmarks/bench_threads.py [--repeats 3] [--threads 1 2]

What it supports: :mod:`featgap.threads`' default rule (threads = cores − other runnable tasks).
For each load ("as is", then "+1 busy process": a ``while True: pass`` child on the side,
started and stopped by this script) the thread counts are timed interleaved, ``--repeats``
times, each the time of a 31-batch epoch implied by ``--steps`` training steps as
:class:`featgap.train.Trainer` runs them (``benchmarks/profile_pgd_at_cpu.py``'s featgap step:
``BatchLoader``, PGD-10, SGD, the metrics read back). The
load average and what :func:`featgap.threads.choose` would pick are recorded with each figure.
Writes ``benchmarks/results/threads_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def epoch_seconds(threads: int, steps: int) -> float:
    """Seconds of one 31-batch PGD-AT epoch, implied by ``steps`` timed training steps (after one untimed)."""
    import torch

    from profile_pgd_at_cpu import featgap_steps

    torch.set_num_threads(threads)
    step = featgap_steps(steps + 1)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 31


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=8, help="timed training steps per figure (default 8)")
    args = p.parse_args()
    os.environ.setdefault("FEATGAP_PROGRESS", "0")
    import torch

    from featgap import threads

    epoch_seconds(1, 1)  # warm-up: imports, the data cache, the first optimiser
    results = []
    for load in ("as is", "+1 busy process"):
        busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "as is" else None)
        try:
            time.sleep(1.0 if busy else 0.0)
            times: dict[int, list[float]] = {t: [] for t in args.threads}
            loads, picks = [], []
            for r in range(args.repeats):
                order = args.threads if r % 2 == 0 else list(reversed(args.threads))
                for t in order:
                    picks.append(threads.choose("auto")["threads"])
                    times[t].append(epoch_seconds(t, args.steps))
                    loads.append(os.getloadavg()[0])
            for t, v in times.items():
                row = {"load": load, "threads": t, "median_s": statistics.median(v), "min_s": min(v), "max_s": max(v),
                       "values": [round(x, 3) for x in v], "loadavg_1min": [round(x, 2) for x in loads],
                       "auto_rule_picked": picks}
                results.append(row)
                print(f"{load:16} {t} thread(s): median {row['median_s']:.2f} s [{row['min_s']:.2f}, {row['max_s']:.2f}]"
                      f"  (load avg {min(loads):.1f}–{max(loads):.1f}; the auto rule picked {sorted(set(picks))})",
                      flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "threads_cpu.json"
    out.write_text(json.dumps({"benchmark": "bench_threads", "command": "python benchmarks/bench_threads.py "
                               + " ".join(sys.argv[1:]), "torch": torch.__version__,
                               "cores": threads.cores(), "rows": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
