"""The feature gap as figures: per layer with confidence intervals, per sample by outcome, and against ε.

Every function here draws what :mod:`featgap.probes` computed and computes nothing of its own
beyond picking rows and columns:

* :func:`gap_by_layer` — one bar per layer: the mean gap with its 95 % bootstrap interval as
  error bars, from :func:`featgap.probes.summarize` (``by="layer"``, or ``("layer", "outcome")``
  for one bar group per outcome);
* :func:`gap_distribution` — the per-sample gaps of :func:`featgap.probes.gap_table`, split by
  outcome (robust / flipped / wrong; colours fixed in :data:`OUTCOME_COLORS`), as box plots,
  violins or overlaid histograms — did the attack succeed where the features moved most?
* :func:`gap_vs_eps` — the mean gap and its interval band against the attack radius ε, one line
  per layer, from :func:`featgap.probes.gap_vs_eps` (or its summary by ``("eps", "layer")``);
* :func:`gap_overview` — the bars and the distribution side by side (what
  :class:`featgap.widgets.GapExplorer` shows).

Typical use::

    table = gap_table(model, x, y, eps=0.3)
    gap_overview(summarize(table), table, metric="linf").show()

Each function returns a ``plotly.graph_objects.Figure`` whose traces have a fixed number and
order for given arguments (one per outcome even when an outcome has no sample), so a widget can
redraw by copying new trace data into the traces it already shows. A table that lacks a needed
column is a one-line :class:`~featgap.errors.FeatgapError` naming the missing columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from featgap.errors import FeatgapError
from featgap.probes import GAP_METRICS, OUTCOMES, summarize

OUTCOME_COLORS: dict[str, str] = {"robust": "#2ca02c", "flipped": "#d62728", "wrong": "#7f7f7f"}
"""One fixed colour per outcome of :func:`featgap.probes.gap_table`, in every figure."""

METRIC_LABELS: dict[str, str] = {"l2": "‖f − f'‖₂", "linf": "‖f − f'‖∞", "cosine": "1 − cos(f, f')",
                                 "rel_l2": "‖f − f'‖₂ / ‖f‖₂"}
"""Axis titles of the feature-gap measures (:data:`featgap.probes.GAP_METRICS`)."""

DISTRIBUTION_KINDS = ("box", "violin", "histogram")
"""How :func:`gap_distribution` draws the per-sample gaps."""

LAYER_COLORS = qualitative.Plotly
"""Colours of layers in :func:`gap_vs_eps`, in the table's layer order."""


# ----------------------------------------------------------------------------- checks

def require_columns(df: object, columns: Iterable[str], what: str) -> None:
    """A one-line :class:`FeatgapError` when ``df`` is not a DataFrame holding every one of ``columns``.

    ``what`` names the figure and the table it expects, e.g. ``"gap_by_layer needs summarize(...)
    output"``.
    """
    if not isinstance(df, pd.DataFrame):
        raise FeatgapError(f"{what}: got {type(df).__name__}, not a pandas DataFrame")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FeatgapError(f"{what}: the table lacks column(s) {', '.join(missing)} "
                           f"(it has {', '.join(map(str, df.columns)) or 'none'})")


def _check_metric(metric: str) -> None:
    if metric not in GAP_METRICS:
        raise FeatgapError(f"unknown gap metric {metric!r}; choose one of: {', '.join(GAP_METRICS)}")


def _layers(df: pd.DataFrame) -> list[str]:
    """The layers of a table in order of first appearance (the model's order)."""
    return list(dict.fromkeys(df["layer"].tolist()))


def _one_eps(df: pd.DataFrame, what: str) -> None:
    if "eps" in df.columns and df["eps"].nunique() > 1:
        values = ", ".join(map(str, sorted(df["eps"].unique())))
        raise FeatgapError(f"{what}: the table holds several eps values ({values}); "
                           "pick one, e.g. table[table.eps == 0.3], or draw gap_vs_eps")


# ----------------------------------------------------------------------------- bars per layer

def gap_bar_traces(summary: pd.DataFrame, metric: str = "l2", *, highlight: str | None = None) -> list[go.Bar]:
    """The bar traces of :func:`gap_by_layer` (for composing figures): one, or one per outcome."""
    _check_metric(metric)
    cols = [f"{metric}_mean", f"{metric}_lo", f"{metric}_hi"]
    require_columns(summary, ["layer", "n", *cols], f"gap_by_layer needs summarize(table) output with {metric}")
    _one_eps(summary, "gap_by_layer")

    def bar(rows: pd.DataFrame, name: str, color: str | None, show: bool) -> go.Bar:
        mean = rows[cols[0]].to_numpy(dtype=float)
        layers = rows["layer"].astype(str).tolist()
        opacity = None
        if highlight is not None:  # the chosen layer solid, the others faded
            opacity = [1.0 if layer == highlight else 0.45 for layer in layers]
        return go.Bar(x=layers, y=mean, name=name, showlegend=show, legendgroup=name,
                      marker=dict(color=color, opacity=opacity),
                      error_y=dict(type="data", symmetric=False, array=rows[cols[2]].to_numpy(dtype=float) - mean,
                                   arrayminus=mean - rows[cols[1]].to_numpy(dtype=float)),
                      customdata=np.stack([rows[cols[1]].to_numpy(dtype=float), rows[cols[2]].to_numpy(dtype=float),
                                           rows["n"].to_numpy(dtype=float)], axis=1),
                      hovertemplate=f"%{{x}}<br>mean {metric} %{{y:.4g}}<br>95%% CI [%{{customdata[0]:.4g}}, "
                                    f"%{{customdata[1]:.4g}}]<br>n = %{{customdata[2]:.0f}}<extra>{name}</extra>")

    if "outcome" in summary.columns:
        return [bar(summary[summary["outcome"] == o], o, OUTCOME_COLORS[o], True) for o in OUTCOMES]
    return [bar(summary, f"mean {metric}", "#4c78a8", False)]


def gap_by_layer(summary: pd.DataFrame, metric: str = "l2", *, highlight: str | None = None,
                 title: str | None = None) -> go.Figure:
    """Bars of the mean feature gap per layer, with the 95 % bootstrap interval as error bars.

    Arguments:
        summary (DataFrame): :func:`featgap.probes.summarize` of a :func:`~featgap.probes.gap_table`,
            with the columns ``layer, n, {metric}_mean, {metric}_lo, {metric}_hi``. Summarised
            ``by=("layer", "outcome")`` it gives one bar group per outcome (robust / flipped / wrong).
        metric (str): one of :data:`featgap.probes.GAP_METRICS`. (Default: ``"l2"``)
        highlight (str | None): a layer drawn solid, the others faded (the widget's chosen layer).
        title (str | None): the figure title. (Default: says the metric)

    Shape:
        - output: a Figure with one bar trace (``x`` the layers, ``y`` the means, ``error_y`` the
          distances to ``hi`` and ``lo``), or three, one per outcome.

    Examples::
        >>> s = summarize(gap_table(model, x, y, eps=0.3))
        >>> gap_by_layer(s, "linf").show()
    """
    fig = go.Figure(gap_bar_traces(summary, metric, highlight=highlight))
    fig.update_layout(title=title or f"Feature gap per layer: mean {metric} with 95% CI", barmode="group",
                      xaxis_title="layer", yaxis_title=METRIC_LABELS[metric], template="plotly_white")
    return fig


# ----------------------------------------------------------------------------- per-sample distribution

def _distribution_rows(table: pd.DataFrame, metric: str, layer: str | None) -> pd.DataFrame:
    _check_metric(metric)
    require_columns(table, ["layer", "outcome", metric], "gap_distribution needs a gap_table")
    _one_eps(table, "gap_distribution")
    if layer is None:
        return table
    layers = _layers(table)
    if layer not in layers:
        raise FeatgapError(f"no layer {layer!r} in the table; it has: {', '.join(map(str, layers))}")
    return table[table["layer"] == layer]


def gap_distribution_traces(table: pd.DataFrame, metric: str = "l2", layer: str | None = None,
                            kind: str = "box") -> list[go.BaseTraceType]:
    """The traces of :func:`gap_distribution` (for composing figures): one per outcome, in :data:`OUTCOMES` order."""
    if kind not in DISTRIBUTION_KINDS:
        raise FeatgapError(f"unknown distribution kind {kind!r}; choose one of: {', '.join(DISTRIBUTION_KINDS)}")
    rows = _distribution_rows(table, metric, layer)
    traces: list[go.BaseTraceType] = []
    for outcome in OUTCOMES:
        part = rows[rows["outcome"] == outcome]
        values = part[metric].to_numpy(dtype=float) if len(part) else []  # [] rather than an empty array:
        # an empty array stays a numpy array in to_dict(), a full one becomes a typed-array spec
        n = part["sample"].nunique() if "sample" in part.columns else len(part)
        name = f"{outcome} ({n})"
        color = OUTCOME_COLORS[outcome]
        common = dict(name=name, legendgroup=outcome, marker_color=color)
        if kind == "histogram":
            traces.append(go.Histogram(x=values, opacity=0.6, nbinsx=30, **common))
        elif kind == "violin":
            traces.append(go.Violin(x=part["layer"].astype(str).tolist(), y=values, points="all", box_visible=True,
                                    line_color=color, spanmode="hard", **common))
        else:
            traces.append(go.Box(x=part["layer"].astype(str).tolist(), y=values, boxpoints="all", jitter=0.4,
                                 pointpos=0, **common))
    return traces


def gap_distribution(table: pd.DataFrame, metric: str = "l2", layer: str | None = None, *, kind: str = "box",
                     title: str | None = None) -> go.Figure:
    """The per-sample feature gap, split by the attack's outcome: robust, flipped, wrong.

    If the ``flipped`` samples' gaps sit above the ``robust`` ones, the attack succeeded where it
    moved the features most.

    Arguments:
        table (DataFrame): a :func:`featgap.probes.gap_table` (columns ``layer, outcome`` and the
            metric; a :func:`~featgap.probes.gap_vs_eps` table only when it holds one ε).
        metric (str): one of :data:`featgap.probes.GAP_METRICS`. (Default: ``"l2"``)
        layer (str | None): one layer; ``None`` draws every layer side by side. (Default: None)
        kind (str): ``"box"`` (with every sample as a point), ``"violin"`` or ``"histogram"``
            (overlaid, one layer at a time makes most sense). (Default: ``"box"``)
        title (str | None): the figure title.

    Shape:
        - output: a Figure with three traces, one per outcome in :data:`~featgap.probes.OUTCOMES`
          order (empty when no sample has that outcome), coloured by :data:`OUTCOME_COLORS`.

    Examples::
        >>> table = gap_table(model, x, y, eps=0.3)
        >>> gap_distribution(table, "l2", layer="pool").show()
    """
    fig = go.Figure(gap_distribution_traces(table, metric, layer, kind))
    where = f" at {layer}" if layer is not None else ""
    fig.update_layout(title=title or f"Per-sample {metric} gap{where}, by outcome", template="plotly_white",
                      legend_title="outcome (n)")
    if kind == "histogram":
        fig.update_layout(barmode="overlay", xaxis_title=METRIC_LABELS[metric], yaxis_title="samples")
    else:
        fig.update_layout(boxmode="group", violinmode="group", xaxis_title="layer", yaxis_title=METRIC_LABELS[metric])
    return fig


# ----------------------------------------------------------------------------- against ε

def _add_mean_with_band(fig: go.Figure, eps: np.ndarray, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, *,
                        color: str, name: str, metric: str) -> None:
    """One curve of a gap-vs-ε figure: the mean as a line with markers over its shaded 95 % CI band."""
    fig.add_trace(go.Scatter(x=np.concatenate([eps, eps[::-1]]), y=np.concatenate([lo, hi[::-1]]), fill="toself",
                             fillcolor=color, opacity=0.2, line=dict(width=0), hoverinfo="skip",
                             legendgroup=name, showlegend=False, name=f"{name} 95% CI"))
    fig.add_trace(go.Scatter(x=eps, y=mean, mode="lines+markers", line_color=color, name=name, legendgroup=name,
                             hovertemplate=f"ε %{{x:.4g}}<br>mean {metric} %{{y:.4g}}<extra>{name}</extra>"))


def gap_vs_eps(table_or_summary: pd.DataFrame, metric: str = "l2", *, layers: Sequence[str] | None = None,
               n_boot: int = 1000, title: str | None = None) -> go.Figure:
    """The mean feature gap against the attack radius ε, one line per layer, with its 95 % interval as a band.

    Arguments:
        table_or_summary (DataFrame): a :func:`featgap.probes.gap_vs_eps` table (columns ``eps,
            layer`` and the metric), summarised here with :func:`~featgap.probes.summarize`
            ``by=("eps", "layer")``; or that summary itself (``eps, layer, {metric}_mean,
            {metric}_lo, {metric}_hi``).
        metric (str): one of :data:`featgap.probes.GAP_METRICS`. (Default: ``"l2"``)
        layers (list[str] | None): the layers to draw. (Default: all, in the table's order)
        n_boot (int): bootstrap resamples when a per-sample table is given. (Default: 1000)
        title (str | None): the figure title.

    Shape:
        - output: a Figure with two traces per layer: the band (``lo`` along ε, then ``hi`` back)
          and the line of means.

    Examples::
        >>> df = gap_vs_eps(model, x, y, eps=[0, 0.1, 0.2, 0.3])     # the probe
        >>> featgap.plots.gap_vs_eps(df, "linf").show()
    """
    _check_metric(metric)
    cols = [f"{metric}_mean", f"{metric}_lo", f"{metric}_hi"]
    if isinstance(table_or_summary, pd.DataFrame) and cols[0] not in table_or_summary.columns:
        require_columns(table_or_summary, ["eps", "layer", metric],
                        "gap_vs_eps needs a gap_vs_eps table or its summary")
        summary = summarize(table_or_summary, by=("eps", "layer"), metrics=[metric], n_boot=n_boot)
    else:
        summary = table_or_summary
    require_columns(summary, ["eps", "layer", *cols], "gap_vs_eps needs a gap_vs_eps table or its summary")
    available = _layers(summary)
    chosen = available if layers is None else list(layers)
    for layer in chosen:
        if layer not in available:
            raise FeatgapError(f"no layer {layer!r} in the table; it has: {', '.join(map(str, available))}")
    fig = go.Figure()
    for i, layer in enumerate(chosen):
        rows = summary[summary["layer"] == layer].sort_values("eps")
        eps = rows["eps"].to_numpy(dtype=float)
        mean, lo, hi = (rows[c].to_numpy(dtype=float) for c in cols)
        _add_mean_with_band(fig, eps, mean, lo, hi, color=LAYER_COLORS[i % len(LAYER_COLORS)], name=str(layer),
                            metric=metric)
    fig.update_layout(title=title or f"Feature gap vs ε: mean {metric} with 95% CI", xaxis_title="ε (pixel units)",
                      yaxis_title=METRIC_LABELS[metric], legend_title="layer", template="plotly_white")
    return fig


# ----------------------------------------------------------------------------- both, side by side

def gap_overview(summary: pd.DataFrame, table: pd.DataFrame, metric: str = "l2", layer: str | None = None, *,
                 kind: str = "box", title: str | None = None) -> go.Figure:
    """:func:`gap_by_layer` (left) and :func:`gap_distribution` (right) in one figure.

    The view of :class:`featgap.widgets.GapExplorer`: the mean gap of every layer with its
    interval, and the samples of one layer split by outcome.

    Arguments:
        summary (DataFrame): ``summarize(table)`` (by layer, or by layer and outcome).
        table (DataFrame): the :func:`featgap.probes.gap_table` it summarises.
        metric (str): one of :data:`featgap.probes.GAP_METRICS`. (Default: ``"l2"``)
        layer (str | None): the layer whose samples are drawn, highlighted among the bars.
            (Default: the table's last layer)
        kind (str): as for :func:`gap_distribution`. (Default: ``"box"``)
        title (str | None): the figure title.

    Shape:
        - output: a Figure with the bar trace(s) of :func:`gap_by_layer` first, then the three
          outcome traces of :func:`gap_distribution`.

    Examples::
        >>> table = gap_table(model, x, y, eps=0.3)
        >>> gap_overview(summarize(table), table, "linf", layer="pool").show()
    """
    require_columns(table, ["layer"], "gap_overview needs a gap_table")
    layer = _layers(table)[-1] if layer is None and len(table) else layer
    bars = gap_bar_traces(summary, metric, highlight=layer)
    dist = gap_distribution_traces(table, metric, layer, kind)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
                        subplot_titles=(f"mean {metric} per layer (95% CI)", f"per-sample {metric} at {layer}"))
    for t in bars:
        fig.add_trace(t, row=1, col=1)
    for t in dist:
        fig.add_trace(t, row=1, col=2)
    fig.update_xaxes(title_text="layer", row=1, col=1)
    fig.update_yaxes(title_text=METRIC_LABELS[metric], row=1, col=1)
    if kind == "histogram":
        fig.update_xaxes(title_text=METRIC_LABELS[metric], row=1, col=2)
        fig.update_yaxes(title_text="samples", row=1, col=2)
    else:
        fig.update_xaxes(title_text="layer", row=1, col=2)
        fig.update_yaxes(title_text=METRIC_LABELS[metric], row=1, col=2)
    fig.update_layout(title=title or f"Feature gap ({metric})",
                      barmode="overlay" if kind == "histogram" and len(bars) == 1 else "group",
                      boxmode="group", violinmode="group", legend_title="outcome (n)", template="plotly_white",
                      margin=dict(t=80))
    return fig


# ----------------------------------------------------------------------------- several runs

def _run_color(colors: Mapping[str, str] | None, run: str, i: int) -> str:
    return (colors or {}).get(run, LAYER_COLORS[i % len(LAYER_COLORS)])


def gap_by_layer_runs(summaries: Mapping[str, pd.DataFrame], metric: str = "l2", *,
                      colors: Mapping[str, str] | None = None, title: str | None = None) -> go.Figure:
    """Several runs' mean feature gap per layer side by side: one bar group per layer, one bar per run.

    The bars are :func:`gap_by_layer`'s (mean, 95 % bootstrap interval as error bars), one trace
    per run instead of one per outcome, so runs compare layer by layer (the HTML report draws this).

    Arguments:
        summaries (dict[str, DataFrame]): run name → :func:`featgap.probes.summarize` of that run's
            :func:`~featgap.probes.gap_table` ``by="layer"`` (columns ``layer, n, {metric}_mean,
            {metric}_lo, {metric}_hi``; one ε).
        metric (str): one of :data:`featgap.probes.GAP_METRICS`. (Default: ``"l2"``)
        colors (dict | None): colour per run name. (Default: plotly's palette in order)
        title (str | None): the figure title.

    Shape:
        - output: a Figure with one bar trace per run, named after it, in the order given.

    Examples::
        >>> s = {name: summarize(gap_table(m, x, y, eps=0.3), by="layer") for name, m in models.items()}
        >>> gap_by_layer_runs(s, "l2").show()
    """
    if not summaries:
        raise FeatgapError("give at least one run's summary")
    fig = go.Figure()
    for i, (run, summary) in enumerate(summaries.items()):
        if isinstance(summary, pd.DataFrame) and "outcome" in summary.columns:
            raise FeatgapError(f"gap_by_layer_runs: the summary of {run} is split by outcome; summarize by='layer'")
        (bar,) = gap_bar_traces(summary, metric)
        bar.update(name=str(run), legendgroup=str(run), showlegend=True, marker_color=_run_color(colors, run, i),
                   hovertemplate=bar.hovertemplate.replace(f"<extra>mean {metric}</extra>", f"<extra>{run}</extra>"))
        fig.add_trace(bar)
    fig.update_layout(title=title or f"Feature gap per layer: mean {metric} with 95% CI", barmode="group",
                      xaxis_title="layer", yaxis_title=METRIC_LABELS[metric], legend_title="run",
                      template="plotly_white")
    return fig


def gap_vs_eps_runs(summaries: Mapping[str, pd.DataFrame], metric: str = "l2", *,
                    colors: Mapping[str, str] | None = None, title: str | None = None) -> go.Figure:
    """Several runs' mean feature gap against ε at one layer: one line (with its 95 % band) per run.

    Arguments:
        summaries (dict[str, DataFrame]): run name → :func:`featgap.probes.summarize` of that run's
            :func:`~featgap.probes.gap_vs_eps` table ``by=("eps", "layer")``, holding one layer
            (columns ``eps, layer, {metric}_mean, {metric}_lo, {metric}_hi``).
        metric (str): one of :data:`featgap.probes.GAP_METRICS`. (Default: ``"l2"``)
        colors (dict | None): colour per run name. (Default: plotly's palette in order)
        title (str | None): the figure title. (Default: names the layer)

    Shape:
        - output: a Figure with two traces per run: its band (``lo`` along ε, then ``hi`` back)
          and its line of means.

    Examples::
        >>> s = {n: summarize(gap_vs_eps(m, x, y, eps=[0, .1, .2, .3], layers="pool"), by=("eps", "layer"))
        ...      for n, m in models.items()}
        >>> gap_vs_eps_runs(s).show()
    """
    _check_metric(metric)
    if not summaries:
        raise FeatgapError("give at least one run's summary")
    cols = [f"{metric}_mean", f"{metric}_lo", f"{metric}_hi"]
    fig = go.Figure()
    layers = []
    for i, (run, summary) in enumerate(summaries.items()):
        require_columns(summary, ["eps", "layer", *cols], "gap_vs_eps_runs needs summarize(gap_vs_eps(...)) output")
        found = _layers(summary)
        if len(found) != 1:
            raise FeatgapError(f"gap_vs_eps_runs: the summary of {run} holds layers {', '.join(map(str, found))}; "
                               "keep one layer per run")
        layers.append(found[0])
        rows = summary.sort_values("eps")
        eps = rows["eps"].to_numpy(dtype=float)
        mean, lo, hi = (rows[c].to_numpy(dtype=float) for c in cols)
        _add_mean_with_band(fig, eps, mean, lo, hi, color=_run_color(colors, run, i), name=str(run), metric=metric)
    where = ", ".join(dict.fromkeys(map(str, layers)))
    fig.update_layout(title=title or f"Feature gap vs ε at {where}: mean {metric} with 95% CI",
                      xaxis_title="ε (pixel units)", yaxis_title=METRIC_LABELS[metric], legend_title="run",
                      template="plotly_white")
    return fig
