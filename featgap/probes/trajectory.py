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

:func:`load_trajectory` turns one or several runs back into one tidy ``pandas.DataFrame``
(columns ``run, epoch, layer, outcome, metric, mean, lo, hi, n``), ready to plot one line per
run and layer, e.g. ``px.line(df[df.metric == "l2"], x="epoch", y="mean", color="layer")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from featgap import runs
from featgap.data import ImageSet
from featgap.errors import FeatgapError
from featgap.probes.adversarial import adversarial_examples
from featgap.probes.components import COMPONENT_STATS, component_norms
from featgap.probes.feature_gap import GAP_METRICS, gap_table
from featgap.probes.frames import frame
from featgap.probes.summary import summarize


class GapTrajectory:
    """Trainer callback that records the feature gap of a fixed probe subset after every epoch.

    ``callback(model, epoch) -> {"probe": {...}}`` (see the module docstring for the record):
    :func:`~featgap.probes.gap_table` on the same stratified ``n`` images, attacked with PGD
    seeded by ``seed + epoch``, summarised per layer and outcome with bootstrap CIs; for a
    model with ``components(x)``, :func:`~featgap.probes.component_norms` too. The subset and
    the attack's random start are fixed, so two epochs differ only by the model; the trainer's
    RNG stream is left untouched.

    Arguments:
        data (ImageSet): where the subset comes from (the validation or test split).
        n (int): images in the subset. eps (float): PGD radius. steps (int): PGD steps. (Default: 10)
        norm (str): ``"linf"`` or ``"l2"``. layers (list[str] | None): probed layers.
        pool (str): ``"avg"`` or ``"flatten"``. n_boot (int): bootstrap resamples. (Default: 200)
        device: where the subset lives. seed (int): subset and attack seed. (Default: 0)

    Examples::
        >>> Trainer(TrainConfig(probe_n=200), out="runs/x").fit()      # adds this callback
        >>> load_trajectory("runs/x")
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
        everyone = t.assign(outcome="all")
        for part in (everyone, t):
            s = summarize(part, by=("layer", "outcome"), n_boot=self.n_boot, seed=self.seed)
            for r in s.to_dict("records"):
                for m in GAP_METRICS:
                    rows.append({"layer": r["layer"], "outcome": r["outcome"], "metric": m, "mean": r[f"{m}_mean"],
                                 "lo": r[f"{m}_lo"], "hi": r[f"{m}_hi"], "n": r["n"]})
        if callable(getattr(model, "components", None)):  # a disentangled model (AFD): its components too
            c = component_norms(model, self.x, self.y, x_adv)
            stats = [m for m in COMPONENT_STATS if m in c.columns]
            for r in summarize(c, by="input", metrics=stats, n_boot=self.n_boot, seed=self.seed).to_dict("records"):
                for m in stats:
                    rows.append({"layer": "components", "outcome": r["input"], "metric": m, "mean": r[f"{m}_mean"],
                                 "lo": r[f"{m}_lo"], "hi": r[f"{m}_hi"], "n": r["n"]})
        first = t[t["layer"] == t["layer"].iloc[0]]
        return {"probe": {"n": len(self.y), "eps": self.eps, "steps": self.steps,
                          "nat_acc": 100.0 * float(first["nat_correct"].to_numpy().mean()),
                          "adv_acc": 100.0 * float(first["adv_correct"].to_numpy().mean()), "rows": rows}}


def load_trajectory(run_dirs: str | Path | Sequence[str | Path], *, names: Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """The feature-gap trajectory recorded during training (:class:`GapTrajectory`), of one or several runs.

    Reads the ``"probe"`` entries of each run's ``metrics.jsonl``: per epoch, layer and outcome
    group (``all``, ``robust``, ``flipped``, ``wrong``; for AFD students also ``components`` ×
    ``nat``/``adv``), the mean of each measure with its bootstrap interval.

    Arguments:
        run_dirs (path | list[path]): run directories trained with ``--probe-n N``.
        names (list[str] | None): labels for the ``run`` column. (Default: each directory's name)

    Shape:
        - output: DataFrame, one row per run × epoch × layer × outcome × metric; columns
          ``run, epoch, layer, outcome, metric, mean, lo, hi, n``.

    Examples::
        >>> df = load_trajectory(["runs/pgd_at", "runs/afd"])
        >>> df.query("metric == 'linf' and outcome == 'all'").pivot(index="epoch", columns=["run", "layer"], values="mean")
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
    return frame({k: np.asarray(v, dtype=object) if k in ("run", "layer", "outcome", "metric") else np.asarray(v)
                  for k, v in cols.items()})
