"""Training curves: accuracies per epoch and the feature-gap trajectory, of one run or several.

Two panels on one epoch axis:

* **accuracy** (percent) from the run's ``metrics.jsonl`` (:func:`featgap.runs.read_metrics`):
  the training batches' accuracy (``train_acc``, and ``train_adv_acc`` for methods that train on
  adversarial examples; both stored as fractions and drawn ×100), and the monitor's clean and PGD
  accuracy on its fixed subset (``monitor_clean_acc``, ``monitor_pgd_acc``);
* **feature gap**: the mean gap per layer with its 95 % bootstrap interval as a band, from the
  trajectory recorded with ``featgap train --probe-n N`` (:func:`featgap.probes.load_trajectory`).
  A run trained without ``--probe-n`` shows the monitor's mean gap of the pooled features
  (``gap_<metric>``, no interval) instead.

Several runs are overlaid (one colour per run; with a single run, one colour per layer), and
:func:`set_epoch_marker` moves a vertical line marking one epoch (the TrainingScrubber's slider)::

    fig = training_curves(["runs/standard", "runs/pgd_at"], epoch=3)
    set_epoch_marker(fig, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from featgap import runs
from featgap.errors import FeatgapError
from featgap.probes import GAP_METRICS, load_trajectory

ACCURACIES = {"train_acc": "train", "train_adv_acc": "train (adversarial)",
              "monitor_clean_acc": "monitor clean", "monitor_pgd_acc": "monitor PGD"}
"""metrics.jsonl key → curve name; ``train_*`` are fractions, the monitor's are percent."""
DASHES = {"train": "dot", "train (adversarial)": "dashdot", "monitor clean": "solid", "monitor PGD": "dash"}
LAYER_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
RUN_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")
EPOCH_MARKER = "epoch marker"
"""The ``name`` of the marker's shapes (one per panel)."""

RunDirs = str | Path | Sequence[str | Path]


def _dirs_and_names(run_dirs: RunDirs, names: Sequence[str] | None) -> list[tuple[Path, str]]:
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise FeatgapError("give at least one run directory")
    labels = [d.name for d in dirs] if names is None else [str(n) for n in names]
    if len(labels) != len(dirs):
        raise FeatgapError(f"{len(labels)} names for {len(dirs)} runs")
    for d in dirs:
        if not d.is_dir():
            raise FeatgapError(f"run {d} does not exist")
        runs.read_config(d)  # one line for a folder that is not a run
    return list(zip(dirs, labels))


def accuracy_table(run_dirs: RunDirs, *, names: Sequence[str] | None = None) -> pd.DataFrame:
    """The accuracy curves of one or several runs as a tidy table: ``run, epoch, curve, accuracy``.

    ``curve`` is a name of :data:`ACCURACIES` (only those the run recorded); ``accuracy`` is in
    percent (``train_*`` fractions ×100).

    Examples::
        >>> accuracy_table("runs/pgd_at").query("curve == 'monitor PGD'")
    """
    rows = []
    for d, label in _dirs_and_names(run_dirs, names):
        for rec in runs.read_metrics(d):
            for key, curve in ACCURACIES.items():
                if key in rec:
                    scale = 100.0 if key.startswith("train_") else 1.0
                    rows.append({"run": label, "epoch": int(rec["epoch"]), "curve": curve,
                                 "accuracy": scale * float(rec[key])})
    return pd.DataFrame(rows, columns=["run", "epoch", "curve", "accuracy"])


def gap_over_training(run_dirs: RunDirs, *, names: Sequence[str] | None = None, metric: str = "l2",
                      outcome: str = "all", layers: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The feature-gap trajectory of one or several runs: ``run, epoch, layer, mean, lo, hi, source``.

    From :func:`~featgap.probes.load_trajectory` (``source="trajectory"``) when the run recorded
    one; else from the monitor's ``gap_<metric>`` in ``metrics.jsonl`` (``source="monitor"``,
    layer ``"pool"``, ``lo``/``hi`` NaN; only for ``outcome="all"``).

    Arguments:
        metric (str): one of ``l2, linf, cosine, rel_l2``. (Default: ``"l2"``)
        outcome (str): ``all``, ``robust``, ``flipped`` or ``wrong``. (Default: ``"all"``)
        layers (str | list[str] | None): keep these layers. (Default: all)
    """
    if metric not in GAP_METRICS:
        raise FeatgapError(f"unknown gap metric {metric!r}; choose one of: {', '.join(GAP_METRICS)}")
    wanted = None if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    parts = []
    for d, label in _dirs_and_names(run_dirs, names):
        records = runs.read_metrics(d)
        if any("probe" in r for r in records):
            t = load_trajectory(d, names=[label])
            t = t[(t["metric"] == metric) & (t["outcome"] == outcome)]
            parts.append(t[["run", "epoch", "layer", "mean", "lo", "hi"]].assign(source="trajectory"))
        elif outcome == "all":
            rows = [{"run": label, "epoch": int(r["epoch"]), "layer": "pool", "mean": float(r[f"gap_{metric}"]),
                     "lo": np.nan, "hi": np.nan, "source": "monitor"} for r in records if f"gap_{metric}" in r]
            parts.append(pd.DataFrame(rows, columns=["run", "epoch", "layer", "mean", "lo", "hi", "source"]))
    cols = ["run", "epoch", "layer", "mean", "lo", "hi", "source"]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    if wanted is not None:
        known = set(table["layer"])
        unknown = [w for w in wanted if w not in known]
        if unknown and not table.empty:
            raise FeatgapError(f"no gap trajectory at layer {', '.join(map(repr, unknown))}; "
                               f"recorded layers: {', '.join(map(str, dict.fromkeys(table['layer'])))}")
        table = table[table["layer"].isin(wanted)]
    return table.reset_index(drop=True)


def add_training_traces(fig: go.Figure, accuracy: pd.DataFrame, gap: pd.DataFrame, *,
                        accuracy_cell: tuple[int, int] = (1, 1), gap_cell: tuple[int, int] = (2, 1)) -> None:
    """Add the accuracy lines and the gap lines with their interval bands to two subplots of ``fig``.

    Each trace carries ``meta`` naming what it shows: ``{"run", "curve"}`` for an accuracy line,
    ``{"run", "layer", "band": False}`` for a gap line and ``{..., "band": True}`` for its interval.
    """
    run_names = list(dict.fromkeys([*accuracy["run"], *gap["run"]]))
    color = {r: RUN_COLORS[i % len(RUN_COLORS)] for i, r in enumerate(run_names)}
    for (run, curve), part in accuracy.groupby(["run", "curve"], sort=False):
        part = part.sort_values("epoch")
        fig.add_trace(go.Scatter(x=part["epoch"].tolist(), y=part["accuracy"].tolist(), mode="lines+markers",
                                 name=f"{run} · {curve}", legendgroup=str(run), meta={"run": run, "curve": curve},
                                 line=dict(color=color[run], dash=DASHES.get(curve, "solid")), marker=dict(size=5),
                                 hovertemplate=f"{run} · {curve}<br>epoch %{{x}}: %{{y:.1f}} %<extra></extra>"),
                      row=accuracy_cell[0], col=accuracy_cell[1])
    layer_names = list(dict.fromkeys(gap["layer"]))
    one_run = len(set(gap["run"])) <= 1
    for (run, layer), part in gap.groupby(["run", "layer"], sort=False):
        part = part.sort_values("epoch")
        i = layer_names.index(layer)
        c = RUN_COLORS[i % len(RUN_COLORS)] if one_run else color[run]
        dash = "solid" if one_run else LAYER_DASHES[i % len(LAYER_DASHES)]
        where = dict(row=gap_cell[0], col=gap_cell[1])
        source = part["source"].iloc[0] if "source" in part else "trajectory"
        label = f"{run} · gap {layer}" + (" (monitor, no CI)" if source == "monitor" else "")
        if np.isfinite(part["lo"].to_numpy(np.float64)).any():
            x = part["epoch"].tolist()
            fig.add_trace(go.Scatter(x=x + x[::-1], y=part["hi"].tolist() + part["lo"].tolist()[::-1], fill="toself",
                                     mode="lines", line=dict(width=0), fillcolor=c, opacity=0.18, hoverinfo="skip",
                                     showlegend=False, legendgroup=f"{run} gap {layer}",
                                     meta={"run": run, "layer": layer, "band": True}), **where)
        fig.add_trace(go.Scatter(x=part["epoch"].tolist(), y=part["mean"].tolist(), mode="lines+markers", name=label,
                                 legendgroup=f"{run} gap {layer}", meta={"run": run, "layer": layer, "band": False},
                                 line=dict(color=c, dash=dash), marker=dict(size=5),
                                 customdata=np.stack([part["lo"].to_numpy(np.float64),
                                                      part["hi"].to_numpy(np.float64)], axis=1).tolist(),
                                 hovertemplate=f"{label}<br>epoch %{{x}}: %{{y:.3g}} "
                                               "[%{customdata[0]:.3g}, %{customdata[1]:.3g}]<extra></extra>"),
                      **where)


def epoch_ticks(fig: go.Figure, last_epoch: int, cells: Sequence[tuple[int, int]] = ((1, 1), (2, 1))) -> None:
    """Whole-epoch ticks on the epoch axes of ``cells`` (every epoch up to 20 epochs, else plotly's choice)."""
    if last_epoch > 20:
        return
    for row, col in cells:
        fig.update_xaxes(tickmode="linear", tick0=1, dtick=1, row=row, col=col)


def add_epoch_marker(fig: go.Figure, epoch: float, cells: Sequence[tuple[int, int]] = ((1, 1), (2, 1))) -> None:
    """A vertical line at ``epoch`` across each subplot in ``cells`` (shapes named :data:`EPOCH_MARKER`)."""
    for row, col in cells:
        fig.add_vline(x=epoch, row=row, col=col, line=dict(color="#222", width=1.5, dash="dot"), name=EPOCH_MARKER)


def set_epoch_marker(fig: go.Figure, epoch: float) -> None:
    """Move the epoch marker's lines to ``epoch`` (in place; works on a ``FigureWidget`` too)."""
    for shape in fig.layout.shapes:
        if shape.name == EPOCH_MARKER:
            shape.x0 = shape.x1 = epoch


def training_curves(run_dirs: RunDirs, *, names: Sequence[str] | None = None, epoch: float | None = None,
                    metric: str = "l2", outcome: str = "all", layers: str | Sequence[str] | None = None,
                    title: str | None = None) -> go.Figure:
    """Accuracy curves and the feature-gap trajectory of one or several runs, on one epoch axis.

    Arguments:
        run_dirs (path | list[path]): run directories (``metrics.jsonl``; a gap trajectory when
            trained with ``--probe-n``).
        names (list[str] | None): labels of the runs. (Default: each directory's name)
        epoch (float | None): draw a vertical marker at this epoch (:func:`set_epoch_marker`
            moves it). (Default: None)
        metric (str): the gap measure, ``l2``, ``linf``, ``cosine`` or ``rel_l2``. (Default: ``"l2"``)
        outcome (str): which samples' gap: ``all``, ``robust``, ``flipped``, ``wrong``. (Default: ``"all"``)
        layers (str | list[str] | None): layers of the trajectory to draw. (Default: all recorded)
        title (str | None): the figure's title.

    Shape:
        - output: a two-row figure; row 1 one line per run × curve (:func:`accuracy_table`),
          row 2 per run × layer a band (the 95 % interval) and a line (:func:`gap_over_training`).

    Examples::
        >>> training_curves(["runs/standard", "runs/pgd_at"], layers="pool", epoch=4).show()
    """
    pairs = _dirs_and_names(run_dirs, names)
    dirs, labels = [d for d, _ in pairs], [n for _, n in pairs]
    accuracy = accuracy_table(dirs, names=labels)
    gap = gap_over_training(dirs, names=labels, metric=metric, outcome=outcome, layers=layers)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("accuracy (%)", f"feature gap ({metric}, {outcome}; 95 % CI)"))
    add_training_traces(fig, accuracy, gap)
    if epoch is not None:
        add_epoch_marker(fig, epoch)
    fig.update_layout(title=title, template="plotly_white", height=560, hovermode="closest",
                      margin=dict(t=70, l=50, r=20, b=40))
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    epoch_ticks(fig, int(max(accuracy["epoch"], default=0)))
    return fig
