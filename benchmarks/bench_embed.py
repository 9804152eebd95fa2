"""What a UMAP map of natural + adversarial features costs, and what featgap's caches save.

Real features: a smallcnn trained for one epoch on mnist5k, then PGD-10 (L∞, ε = 0.3) on the
1,000 mnist5k test images; the pooled penultimate features (``model.features``, 128-D) of the
natural and the adversarial images are embedded together (2 × 1,000 points)::

    python benchmarks/bench_embed.py              # ~1-2 minutes on 2 CPU cores
    python benchmarks/bench_embed.py --random-init --n 500

Every measurement runs in a fresh Python process, so imports and JIT compilation are paid
honestly; all caches live in a temporary folder (nothing in ``~/.cache`` is touched):

* cold      — empty numba cache (``NUMBA_CACHE_DIR`` → empty folder): importing umap compiles
  pynndescent, the first fit compiles umap-learn;
* warm      — a new process with that numba cache filled: the usual case after the first run;
* warm, ablations — the same without featgap's two speed-ups (numba's disk cache switched on
  for umap-learn's own functions; a BLAS distance matrix for fewer than 4,096 points);
* cached    — the same call again in a new process: featgap's embedding cache, no umap import.

"import umap" is the time of ``import umap``; "embed" the time of the ``embed()`` call after it
(the first one compiles what the import did not); "repeat" a second ``embed()`` in the same
process, i.e. the computation alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_features(folder: Path, n: int, train: bool) -> str:
    """Save natural and PGD features of ``n`` mnist5k test images as nat.npy / adv.npy; describe them."""
    import numpy as np
    import torch

    from featgap import data, models
    from featgap.attacks import pgd
    from featgap.train import TrainConfig, Trainer

    start = time.perf_counter()
    if train:
        model = Trainer(TrainConfig(epochs=1, monitor_n=0), out=None).fit()
    else:
        torch.manual_seed(0)
        model = models.create("smallcnn", 10, 1)
    model.eval()
    test = data.load("mnist5k", "test")
    x, y = test.images[:n].float() / 255.0, test.labels[:n]
    torch.manual_seed(0)
    x_adv = torch.cat([pgd(model, x[i:i + 250], y[i:i + 250], eps=0.3, steps=10) for i in range(0, len(x), 250)])
    with torch.no_grad():
        f_nat, f_adv = model.features(x), model.features(x_adv)
        acc, rob = (model(x).argmax(1) == y).float().mean(), (model(x_adv).argmax(1) == y).float().mean()
    np.save(folder / "nat.npy", f_nat.numpy())
    np.save(folder / "adv.npy", f_adv.numpy())
    how = "trained 1 epoch" if train else "random init"
    return (f"smallcnn ({how}): clean acc {acc:.1%}, PGD-10 acc {rob:.1%}; features {tuple(f_nat.shape)} ×2 "
            f"[{time.perf_counter() - start:.0f} s to prepare]")


def child(args: argparse.Namespace) -> None:
    """One measurement, in this (fresh) process; prints one JSON line."""
    import numpy as np

    from featgap.probes import embedding as embed_mod

    folder = Path(args.data)
    nat, adv = np.load(folder / "nat.npy"), np.load(folder / "adv.npy")
    if args.no_jit_cache:
        embed_mod._enable_umap_jit_cache = lambda: 0
    if args.umap_distances:
        embed_mod.SMALL_DATA = 0
    result: dict = {}
    cache = args.cache_dir is not None
    if args.kind != "cached":
        start = time.perf_counter()
        embed_mod._import_umap()
        result["import"] = time.perf_counter() - start
    start = time.perf_counter()
    emb = embed_mod.embed(nat, adv, method="umap", cache=cache, cache_dir=args.cache_dir)
    result["embed"] = time.perf_counter() - start
    if args.repeat:
        start = time.perf_counter()
        embed_mod.embed(nat, adv, method="umap", cache=False)
        result["repeat"] = time.perf_counter() - start
    result["umap_imported"] = "umap" in sys.modules
    result["shift"] = float(emb.shift().mean())
    print(json.dumps(result))


def measure(script: Path, data: Path, numba_dir: Path, kind: str, *extra: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(numba_dir), "FEATGAP_PROGRESS": "0"}
    out = subprocess.run([sys.executable, str(script), "--child", kind, "--data", str(data), *extra],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"measurement {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000,
                        help="test images (each gives a natural and an adversarial point)")
    parser.add_argument("--random-init", action="store_true", help="skip the 1-epoch training (random smallcnn)")
    parser.add_argument("--no-ablations", action="store_true", help="skip the two 'without featgap speed-up' rows")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-jit-cache", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--umap-distances", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.kind = args.child
        child(args)
        return

    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory(prefix="featgap-bench-embed-") as tmp:
        tmp = Path(tmp)
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
              "(other processes on a shared machine distort these timings)")
        print(make_features(tmp, args.n, train=not args.random_init))
        numba_dir, cache_dir = tmp / "numba", str(tmp / "embeddings")
        rows = [("cold: empty numba cache", measure(script, tmp, numba_dir, "cold")),
                ("warm: numba cache on disk", measure(script, tmp, numba_dir, "warm", "--repeat",
                                                      "--cache-dir", cache_dir))]
        if not args.no_ablations:
            rows += [("warm, umap-learn's functions not disk-cached",
                      measure(script, tmp, numba_dir, "no-jit-cache", "--no-jit-cache")),
                     ("warm, umap-learn's own pairwise distances",
                      measure(script, tmp, numba_dir, "umap-distances", "--umap-distances", "--repeat"))]
        rows.append(("cached: featgap embedding cache", measure(script, tmp, numba_dir, "cached",
                                                                "--cache-dir", cache_dir)))
    print(f"\nUMAP of 2 × {args.n} points, seconds (each row a fresh process)")
    print(f"{'':46} {'import umap':>11} {'embed()':>8} {'repeat':>7}  umap imported")
    for name, r in rows:
        cells = [_seconds(r.get(k)) for k in ("import", "embed", "repeat")]
        print(f"{name:46} {cells[0]:>11} {cells[1]:>8} {cells[2]:>7}  {'yes' if r['umap_imported'] else 'no'}")
    shifts = {round(r["shift"], 4) for _, r in rows}
    print(f"mean nat→adv shift on the map: {', '.join(map(str, sorted(shifts)))}")


if __name__ == "__main__":
    main()
