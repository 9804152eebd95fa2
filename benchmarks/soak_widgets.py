"""Soak test of the widgets: 1,000 control updates of each view in one process, memory at the 100th and the last.

    python benchmarks/soak_widgets.py                        # trains two tiny runs first (~30 s)
    python benchmarks/soak_widgets.py --runs DIR             # reuse DIR/standard and DIR/pgd_at
    python benchmarks/soak_widgets.py --updates 200 --no-write

Each view of :mod:`featgap.widgets` is built on ``--n`` mnist5k test images and then driven
headlessly, the way its observers see moves in the page (``view.eps.value = 0.2``, as in
``bench_widgets.py``): ``--updates`` control changes per view, each a real change of value (so
every one recomputes or recalls its numbers and rewrites the ``FigureWidget``). The process's
resident set size (psutil, else ``/proc/self/statm``) is read after a ``gc.collect()`` at the
1st, the 100th and the last update; the target (issue 17) is growth below 10 % from the 100th
update to the last. All views run in one process, one after the other.

How the controls move: like a user who sweeps a slider back and forth over a range, so most
updates recall what the view computed on an earlier visit; every setting of the sweep is first
visited within the first 100 updates, so growth after the 100th update is not the views' caches
filling (those are bounded by the controls' positions) but anything that leaks per update:

* GapExplorer: ε over 12 slider positions (each first visit a live PGD-10 on the images), with
  the gap measure and the layer changed in between;
* SampleInspector: the sample slider over all ``--n`` images (each first visit a live attack,
  gap and attributions of one image), with the gap measure and the attribution method in between;
* TrainingScrubber: the epoch slider over every epoch (maps precomputed at construction);
* EmbeddingExplorer: the layer over the models' layers (PCA maps; UMAP is left out: its first
  map costs a JIT compile of ~30 s, not a per-update cost);
* RunComparer: the run selection over three subsets, with the gap measure in between.

Writes ``benchmarks/results/soak_widgets.json``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("FEATGAP_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).resolve().parent / "results"
MB = 1024 * 1024
LIMIT = 0.10  # growth from the 100th update to the last


def rss_bytes() -> int:
    """The current resident set size of this process."""
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil comes with the test extras
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_method() -> str:
    try:
        import psutil  # noqa: F401
        return "psutil.Process().memory_info().rss"
    except ImportError:  # pragma: no cover
        return "/proc/self/statm"


def moves(controls: list[tuple[object, list[object]]], pattern: list[int]) -> Iterator[tuple[object, object]]:
    """Endless ``(control, value)`` changes: ``pattern`` picks which control moves at each step (by
    index into ``controls``); each control steps through its own list of values, cyclically, skipping
    a value equal to the control's current one (so every change is a real change)."""
    cycles = [itertools.cycle(values) for _, values in controls]
    for k in itertools.cycle(pattern):
        control, _ = controls[k]
        value = next(cycles[k])
        if value == control.value:
            value = next(cycles[k])
        yield control, value


def soak(name: str, view, changes: Iterator[tuple[object, object]], updates: int, note: str) -> dict:  # noqa: ANN001
    """``updates`` changes of ``view``'s controls; RSS after the 1st, the 100th and the last."""
    marks = {1, min(100, updates), updates}
    rss: dict[int, int] = {}
    start = time.perf_counter()
    for i in range(1, updates + 1):
        control, value = next(changes)
        control.value = value
        if view.last_error:
            raise RuntimeError(f"{name}: update {i} ({value!r}) failed: {view.last_error}")
        if i in marks:
            gc.collect()
            rss[i] = rss_bytes()
    seconds = time.perf_counter() - start
    at100, last = rss[min(100, updates)], rss[updates]
    growth = (last - at100) / at100
    row = {"view": name, "updates": updates, "how": note, "rss_mb_at_1": round(rss[1] / MB, 1),
           "rss_mb_at_100": round(at100 / MB, 1), "rss_mb_at_last": round(last / MB, 1),
           "growth_100_to_last_percent": round(100 * growth, 2), "passes": growth < LIMIT,
           "cache_entries": len(getattr(view, "_cache", {})), "seconds": round(seconds, 1),
           "ms_per_update": round(1000 * seconds / updates, 1)}
    print(f"{name:18} {updates:5} updates  RSS {row['rss_mb_at_1']:7.1f} (1st)  {row['rss_mb_at_100']:7.1f} (100th)  "
          f"{row['rss_mb_at_last']:7.1f} MB (last)  growth {row['growth_100_to_last_percent']:+5.2f} %  "
          f"{seconds:6.1f} s  {'ok' if row['passes'] else 'OVER 10 %'}", flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=None,
                   help="a directory with standard/ and pgd_at/ runs (default: train tiny ones in a temp dir)")
    p.add_argument("--n", type=int, default=32, help="images each view holds (default 32)")
    p.add_argument("--updates", type=int, default=1000, help="control changes per view (default 1000)")
    p.add_argument("--no-write", action="store_true", help="print only; leave results/soak_widgets.json as it is")
    args = p.parse_args()

    import torch

    from bench_widgets import train_runs
    from featgap import data
    from featgap.widgets import EmbeddingExplorer, GapExplorer, RunComparer, SampleInspector, TrainingScrubber

    root = args.runs if args.runs is not None else Path(tempfile.mkdtemp(prefix="featgap-soak-widgets-"))
    run = train_runs(root)  # trains what DIR lacks, reuses what it has
    x, y = data.load("mnist5k", "test").stratified_subset(args.n, 0).tensors()
    u = args.updates
    load_start = os.getloadavg()
    start_rss = rss_bytes()
    rows = []

    def run_view(name: str, build: Callable[[], object], controls: Callable[[object], list], pattern: list[int],
                 note: str) -> None:
        view = build()
        rows.append(soak(name, view, moves(controls(view), pattern), u, note))
        del view
        gc.collect()

    run_view("GapExplorer", lambda: GapExplorer(run["pgd_at"], x, y),
             lambda v: [(v.eps, [round(v.eps.step * k, 9) for k in range(40, 52)]),
                        (v.metric, list(v.metric.options)), (v.layer, list(v.layer.options))],
             [0, 1, 0, 2], "ε over 12 slider positions (each first visit PGD-10 on the images), gap measure and "
             "layer in between; after the first sweep every ε is a recall")
    run_view("SampleInspector", lambda: SampleInspector(run["standard"], x, y),
             lambda v: [(v.index, list(range(args.n))), (v.metric, list(v.metric.options)),
                        (v.method, list(v.method.options))],
             [0, 0, 1, 0, 0, 2], f"sample slider over all {args.n} images (each first visit: attack, gap, "
             "attributions of one image), gap measure and attribution method in between")
    run_view("TrainingScrubber", lambda: TrainingScrubber([run["standard"], run["pgd_at"]], x, y),
             lambda v: [(v.epoch, list(range(v.epoch.min, v.epoch.max + 1)))], [0],
             "epoch slider over every epoch (maps precomputed at construction)")
    run_view("EmbeddingExplorer", lambda: EmbeddingExplorer([run["standard"], run["pgd_at"]], x, y),
             lambda v: [(v.layer, list(v.layer.options))], [0],
             "layer over the models' layers, PCA maps (UMAP left out: a one-off JIT compile, not a per-update cost)")
    run_view("RunComparer", lambda: RunComparer([run["standard"], run["pgd_at"]], x, y),
             lambda v: [(v.select, [("pgd_at",), ("standard", "pgd_at"), ("standard",)]),
                        (v.metric, list(v.metric.options))],
             [0, 1], "run selection over three subsets, gap measure in between")

    ok = all(r["passes"] for r in rows)
    load_end = os.getloadavg()
    print(f"process RSS {start_rss / MB:.0f} MB before the first view, {rss_bytes() / MB:.0f} MB after the last; "
          f"{'every view grew < 10 %' if ok else 'a view grew ≥ 10 %'} from its 100th update to its last")
    if not args.no_write:
        import ipywidgets
        import plotly

        record = {"benchmark": "soak_widgets", "command": "python benchmarks/soak_widgets.py " + " ".join(sys.argv[1:]),
                  "device": "cpu", "images_per_view": args.n, "updates_per_view": u,
                  "rss": rss_method() + ", after gc.collect()", "limit_growth_100_to_last_percent": 100 * LIMIT,
                  "environment": {"python": platform.python_version(), "torch": torch.__version__,
                                  "plotly": plotly.__version__, "ipywidgets": ipywidgets.__version__,
                                  "platform": platform.platform(), "cpu_count": os.cpu_count(),
                                  "torch_threads": torch.get_num_threads(),
                                  "loadavg_at_start": [round(v, 2) for v in load_start],
                                  "loadavg_at_end": [round(v, 2) for v in load_end]},
                  "process_rss_mb_before": round(start_rss / MB, 1), "all_pass": ok, "rows": rows}
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / "soak_widgets.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
