"""The feature gap over training: a Trainer callback that records it every epoch, and a loader.

:class:`GapTrajectory` attacks the same fixed probe subset after every epoch, measures the gap
at every probed layer (:func:`~featgap.probes.gap_table`) and adds one entry to that epoch's
``metrics.jsonl`` record::

    "probe": {"n": 200, "eps": 0.3, "nat_acc": 97.5, "adv_acc": 81.0,
              "rows": [{"layer": "pool", "outcome": "all", "metric": "l2",
                        "mean": 3.1, "lo": 2.9, "hi": 3.3, "n": 200}, ...]}

with one row per (layer, outcome group, metric); the group ``all`` pools every sample, the
others are ``robust``/``flipped``/``wrong`` (see :mod:`featgap.probes.feature_gap`). For an
AFD student it adds rows with ``layer="components"``, ``outcome`` = ``nat`` or ``adv`` and the
metrics ``f1_norm``, ``f2_norm``, ``cos_f1_f2``, ``conf_hit`` (:mod:`featgap.probes.components`). Train with
it from the command line with ``featgap train --probe-n 200`` (or ``TrainConfig(probe_n=200)``).

:func:`load_trajectory` turns one or several runs back into one tidy table (columns ``run,
epoch, layer, outcome, metric, mean, lo, hi, n``), ready to plot one line per run and layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from featgap import runs
from featgap.data import ImageSet
from featgap.errors import FeatgapError
from featgap.probes.components import COMPONENT_STATS, component_norms
from featgap.probes.feature_gap import GAP_METRICS, adversarial_examples, gap_table
from featgap.probes.summary import summarize
from featgap.probes.table import Table


class GapTrajectory:
    """Trainer callback: ``callback(model, epoch) -> {"probe": {...}}`` (see the module docstring).

    The subset (stratified, ``n`` images) and the PGD random start are fixed, so two epochs
    differ only by the model. The trainer's RNG stream is left untouched.
    """

    def __init__(self, data: ImageSet, *, n: int, eps: float, steps: int = 10, norm: str = "linf",
                 layers: Sequence[str] | None = None, pool: str = "avg", n_boot: int = 200,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        if n < 1:
            raise FeatgapError(f"the probe subset needs at least one image; got n={n}")
        subset = data.stratified_subset(n, seed) if n < len(data) else data
        self.x, self.y = subset.tensors(device)
        self.eps, self.steps, self.norm = eps, steps, norm
        self.layers, self.pool, self.n_boot, self.seed = layers, pool, n_boot, seed

    def __call__(self, model: nn.Module, epoch: int) -> dict:
        x_adv = adversarial_examples(model, self.x, self.y, eps=self.eps, steps=self.steps, norm=self.norm,
                                     seed=self.seed + epoch).to(self.x.device)
        t = gap_table(model, self.x, self.y, x_adv, layers=self.layers, pool=self.pool)
        rows = []
        everyone = t.with_columns(outcome="all")
        for part in (everyone, t):
            s = summarize(part, by=("layer", "outcome"), n_boot=self.n_boot, seed=self.seed)
            for r in s.rows():
                for m in GAP_METRICS:
                    rows.append({"layer": r["layer"], "outcome": r["outcome"], "metric": m, "mean": r[f"{m}_mean"],
                                 "lo": r[f"{m}_lo"], "hi": r[f"{m}_hi"], "n": r["n"]})
        if callable(getattr(model, "components", None)):  # an AFD student: its components too
            c = component_norms(model, self.x, x_adv, self.y)
            for r in summarize(c, by="input", metrics=COMPONENT_STATS, n_boot=self.n_boot, seed=self.seed).rows():
                for m in COMPONENT_STATS:
                    rows.append({"layer": "components", "outcome": r["input"], "metric": m, "mean": r[f"{m}_mean"],
                                 "lo": r[f"{m}_lo"], "hi": r[f"{m}_hi"], "n": r["n"]})
        first = t.where(t["layer"] == t["layer"][0])
        return {"probe": {"n": len(self.y), "eps": self.eps, "steps": self.steps,
                          "nat_acc": 100.0 * float(first["nat_correct"].mean()),
                          "adv_acc": 100.0 * float(first["adv_correct"].mean()), "rows": rows}}


def load_trajectory(run_dirs: str | Path | Sequence[str | Path], *, names: Sequence[str] | None = None) -> Table:
    """The recorded feature-gap trajectory of one or several runs as one tidy table.

    ``names`` labels the runs in the ``run`` column (default: each directory's name). A run
    trained without the callback is a one-line error that says how to record one.
    """
    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    if not dirs:
        raise FeatgapError("give at least one run directory")
    labels = [Path(d).name for d in dirs] if names is None else list(names)
    if len(labels) != len(dirs):
        raise FeatgapError(f"{len(labels)} names for {len(dirs)} runs")
    cols: dict[str, list] = {k: [] for k in ("run", "epoch", "layer", "outcome", "metric", "mean", "lo", "hi", "n")}
    for d, label in zip(dirs, labels):
        runs.read_config(d)  # a clear error for a folder that is not a run
        records = [r for r in runs.read_metrics(d) if "probe" in r]
        if not records:
            raise FeatgapError(f"{d} has no feature-gap trajectory; train it with --probe-n N "
                               "(or TrainConfig(probe_n=N)) to record one")
        for rec in records:
            for row in rec["probe"]["rows"]:
                cols["run"].append(label)
                cols["epoch"].append(rec["epoch"])
                for k in ("layer", "outcome", "metric", "mean", "lo", "hi", "n"):
                    cols[k].append(row[k])
    return Table({k: np.asarray(v, dtype=object) if k in ("run", "layer", "outcome", "metric") else np.asarray(v)
                  for k, v in cols.items()})
