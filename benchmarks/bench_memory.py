"""Peak memory of a probe and an evaluation over 1,000 and 10,000 CIFAR-shaped inputs (issue 17).

    python benchmarks/bench_memory.py                        # 1,000 and 10,000 inputs, PGD-2
    python benchmarks/bench_memory.py --sizes 500 4000 --no-write

Each case runs in a fresh Python process (``--child``), so one case's high-water mark cannot
hide another's. In the child: random uint8 images of shape 3 × 32 × 32 (labels 0–9) and a
random-weight ``smallcnn`` (10 classes, 3 channels) are built, the case runs once on 16 images
(imports, kernels, allocator pools), then ``ru_maxrss`` is read (*base*: the process with its
inputs) and the case runs on all ``N`` images; ``ru_maxrss`` read again is the *peak*. The cases:

* ``probe``: :func:`featgap.probes.gap_table` (what ``featgap probe`` runs) with its own PGD-2
  attack at ε = 8/255, on float images (the input tensor ``N × 3 × 32 × 32`` float32: 123 MB at
  10,000), all layers of the model and the logits;
* ``evaluate``: :func:`featgap.evaluate.evaluate` with ``autoattack=False``, PGD-2 and its sanity
  checks, on an :class:`~featgap.data.ImageSet` of uint8 images (it makes the float copy itself).

Streaming in batches means the growth ``peak − base`` rises with what a run must hold for every
input (the float images and their adversarial examples, the output table), never with the
activations of all inputs at once. Writes ``benchmarks/results/memory.json``: per case and N the
base and peak RSS, the growth, the bytes of the input tensor and of the output, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("probe", "evaluate")
EPS = 8 / 255
MB = 1024 * 1024


def max_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child(case: str, n: int, steps: int, batch_size: int) -> dict:
    """Run ``case`` on ``n`` random CIFAR-shaped inputs in this process; the figures as a dict."""
    os.environ.setdefault("FEATGAP_PROGRESS", "0")
    import torch

    from featgap.data import ImageSet, info
    from featgap.evaluate import evaluate
    from featgap.models import create
    from featgap.probes import gap_table

    torch.manual_seed(0)
    model = create("smallcnn", num_classes=10, in_channels=3).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)

    if case == "probe":
        x = images.float().div_(255.0)
        del images

        def run(k: int) -> int:
            table = gap_table(model, x[:k], labels[:k], eps=EPS, steps=steps, batch_size=batch_size)
            return int(table.memory_usage(deep=True).sum())
        input_bytes = x.numel() * x.element_size()
    else:
        data = ImageSet(images, labels, info("cifar10"), "test")

        def run(k: int) -> int:
            part = data if k == n else data.subset(torch.arange(k))
            result = evaluate(model, part, eps=EPS, pgd_steps=steps, autoattack=False, batch_size=batch_size)
            return len(json.dumps(result.as_dict()))
        input_bytes = images.numel() * images.element_size()

    run(16)  # warm-up: lazy imports, kernels, the allocator's first pools
    base = max_rss_bytes()
    start = time.perf_counter()
    output_bytes = run(n)
    seconds = time.perf_counter() - start
    peak = max_rss_bytes()
    return {"case": case, "n": n, "pgd_steps": steps, "batch_size": batch_size,
            "input_bytes": input_bytes, "output_bytes": output_bytes,
            "base_rss_mb": round(base / MB, 1), "peak_rss_mb": round(peak / MB, 1),
            "growth_mb": round((peak - base) / MB, 1), "seconds": round(seconds, 2),
            "torch_threads": torch.get_num_threads()}


def measure(case: str, n: int, steps: int = 2, batch_size: int = 250) -> dict:
    """:func:`child` in a fresh interpreter (so its ``ru_maxrss`` is its own), parsed from its last line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, str(n), "--steps", str(steps),
           "--batch-size", str(batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def environment() -> dict:
    import numpy
    import pandas
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "platform": platform.platform(), "device": "cpu",
            "cpu_count": os.cpu_count(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "loadavg_at_start": [round(v, 2) for v in os.getloadavg()]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--steps", type=int, default=2, help="PGD steps (default 2: memory, not strength, is measured)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--no-write", action="store_true", help="print only; leave results/memory.json as it is")
    p.add_argument("--child", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.steps, args.batch_size)))
        return 0
    env = environment()
    rows = []
    print(f"{'case':9} {'N':>7} {'input MB':>9} {'output MB':>9} {'base MB':>8} {'peak MB':>8} {'growth MB':>9} "
          f"{'s':>6}")
    for case in args.cases:
        for n in args.sizes:
            r = measure(case, n, args.steps, args.batch_size)
            rows.append(r)
            print(f"{case:9} {n:7,} {r['input_bytes'] / MB:9.1f} {r['output_bytes'] / MB:9.2f} {r['base_rss_mb']:8.1f} "
                  f"{r['peak_rss_mb']:8.1f} {r['growth_mb']:9.1f} {r['seconds']:6.1f}", flush=True)
    env["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    record = {"benchmark": "bench_memory", "command": "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:]),
              "device": "cpu", "model": "smallcnn (random weights, 10 classes, 3 channels)",
              "inputs": "random uint8 images 3×32×32, labels 0–9", "eps": EPS, "environment": env, "rows": rows}
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / "memory.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
