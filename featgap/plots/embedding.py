"""Maps of natural and adversarial features: circles, crosses, and the segment joining each pair.

An :class:`~featgap.probes.Embedding` places every natural feature vector and its adversarial
partner on one 2-D map (``emb.table``: ``sample, input, dim1, dim2``). This module draws it:

* natural points as **circles**, adversarial points as **crosses**, both coloured by the
  sample's class (a fixed 10-class palette, :data:`PALETTE`, so class 3 has the same colour in
  every figure);
* a thin grey **segment** from each natural point to its adversarial twin (one trace, the
  segments separated by ``None``), so a long segment is a sample the attack moved far;
* hover text with the sample, its class and both predictions, and each point's sample index as
  ``customdata`` (a widget's click handler reads it to open that sample; plotly's hover cannot
  show an image, so :class:`~featgap.widgets.EmbeddingExplorer` shows the thumbnail in a panel
  beside the map).

Predictions come from a per-sample probe table with ``sample, label, nat_pred, adv_pred`` (and
optionally ``outcome``) — :func:`~featgap.probes.gap_table` of the same images gives exactly that::

    emb = embed(f_nat, f_adv, method="pca")
    fig = embedding_map(emb.table, gap_table(model, x, y, x_adv, layers="pool"))

:func:`embedding_maps` draws several maps side by side on shared axes — for maps in one frame,
such as two runs' features mapped by :func:`~featgap.probes.embed_sequence`. Every map has the
same three traces (pairs, natural, adversarial) in that order, so a widget updates them in place
with the values :func:`embedding_points` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from featgap.errors import FeatgapError

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
"""Class ``k`` is drawn in ``PALETTE[k % 10]`` (the D3 / tab10 colours)."""
UNLABELLED = "#444444"
PAIR_COLOR = "rgba(110, 110, 110, 0.35)"
TRACES = ("pairs", "natural", "adversarial")
"""The traces of one map, in the order they are added."""
MARKERS = {"natural": dict(symbol="circle", size=8, line=dict(width=0.5, color="white")),
           "adversarial": dict(symbol="x", size=8, line=dict(width=0))}


def class_color(label: int | None) -> str:
    """The palette colour of class ``label`` (dark grey when unknown)."""
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return UNLABELLED
    return PALETTE[int(label) % len(PALETTE)]


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise FeatgapError(f"an embedding table must be a DataFrame (Embedding.table), got {type(table).__name__}")
    missing = [c for c in ("sample", "input", "dim1", "dim2") if c not in table.columns]
    if missing:
        raise FeatgapError(f"the embedding table lacks column(s) {', '.join(missing)}: pass Embedding.table")
    if table.empty:
        raise FeatgapError("the embedding table is empty: nothing to draw")
    return table


def _per_sample(samples: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per sample (a probe table may hold one per layer: the first is taken)."""
    if samples is None:
        return None
    if not isinstance(samples, pd.DataFrame) or "sample" not in samples.columns:
        raise FeatgapError("samples must be a per-sample DataFrame with a 'sample' column (e.g. gap_table's)")
    return samples.drop_duplicates("sample").set_index("sample")


def _hover(sample: int, info: pd.Series | None, kind: str) -> str:
    lines = [f"<b>sample {sample}</b> · {kind}"]
    if info is not None:
        if "label" in info:
            lines[0] += f" · class {int(info['label'])}"
        if "nat_pred" in info:
            lines.append(f"natural → {int(info['nat_pred'])}")
        if "adv_pred" in info:
            lines.append(f"adversarial → {int(info['adv_pred'])}"
                         + (f" ({info['outcome']})" if "outcome" in info else ""))
    return "<br>".join(lines)


def embedding_points(table: pd.DataFrame, samples: pd.DataFrame | None = None) -> dict[str, dict]:
    """The values of one map's traces, ``{"pairs": {...}, "natural": {...}, "adversarial": {...}}``.

    Each value is a dict of trace properties (``x``, ``y``, ``customdata``, ``text``,
    ``marker.color``) to pass to ``trace.update(...)``; :func:`embedding_map` draws with them and
    a widget updates its traces in place with them. Points are in sample order; a segment joins
    each natural point to the adversarial point of the same ``sample``.

    Arguments:
        table (DataFrame): ``Embedding.table``: ``sample, input ('nat'|'adv'), dim1, dim2``.
        samples (DataFrame | None): per-sample ``sample, label, nat_pred, adv_pred[, outcome]``,
            e.g. :func:`~featgap.probes.gap_table`'s rows (one layer is enough). (Default: None)

    Examples::
        >>> points = embedding_points(emb.table, gap_table(model, x, y, x_adv, layers="pool"))
        >>> points["natural"]["x"][:3]
    """
    table = _check_table(table)
    info = _per_sample(samples)
    out: dict[str, dict] = {}
    parts = {}
    for trace, kind in (("natural", "nat"), ("adversarial", "adv")):
        part = table[table["input"] == kind].sort_values("sample", kind="stable")
        parts[kind] = part
        ids = [int(s) for s in part["sample"]]
        rows = [info.loc[s] if info is not None and s in info.index else None for s in ids]
        labels = [r["label"] if r is not None and "label" in r else None for r in rows]
        out[trace] = {"x": part["dim1"].to_numpy(np.float64).tolist(), "y": part["dim2"].to_numpy(np.float64).tolist(),
                      "customdata": ids, "text": [_hover(s, r, trace) for s, r in zip(ids, rows)],
                      "marker": {"color": [class_color(lab) for lab in labels]}}
    nat = parts["nat"].set_index("sample")
    adv = parts["adv"].set_index("sample")
    both = [s for s in nat.index if s in adv.index]
    xs: list[float | None] = []
    ys: list[float | None] = []
    for s in both:
        xs += [float(nat.at[s, "dim1"]), float(adv.at[s, "dim1"]), None]
        ys += [float(nat.at[s, "dim2"]), float(adv.at[s, "dim2"]), None]
    out["pairs"] = {"x": xs, "y": ys}
    return out


def add_embedding_map(fig: go.Figure, table: pd.DataFrame, samples: pd.DataFrame | None = None, *,
                      row: int | None = None, col: int | None = None, showlegend: bool = True) -> list[int]:
    """Add one map's three traces (pairs, natural, adversarial) to ``fig``; return their indices.

    ``row``/``col`` place them in a subplot of a ``make_subplots`` figure. Legend entries are
    grouped, so hiding "adversarial" hides the crosses of every map; pass ``showlegend=False``
    for the second and later maps.

    Examples::
        >>> fig = make_subplots(rows=1, cols=2)
        >>> add_embedding_map(fig, emb_a.table, preds_a, row=1, col=1)
    """
    points = embedding_points(table, samples)
    where = {"row": row, "col": col} if row is not None else {}
    first = len(fig.data)
    fig.add_trace(go.Scatter(mode="lines", name="natural → adversarial", legendgroup="pairs", showlegend=showlegend,
                             line=dict(color=PAIR_COLOR, width=1), hoverinfo="skip", **points["pairs"]), **where)
    for trace in ("natural", "adversarial"):
        values = dict(points[trace])
        marker = {**MARKERS[trace], **values.pop("marker")}
        fig.add_trace(go.Scatter(mode="markers", name=trace, legendgroup=trace, showlegend=showlegend,
                                 marker=marker, hovertemplate="%{text}<extra></extra>", **values), **where)
    return list(range(first, first + len(TRACES)))


def add_class_key(fig: go.Figure, labels: Sequence[int]) -> None:
    """Legend entries "class k" in the palette colours (legend-only traces, no data)."""
    for k in sorted({int(v) for v in labels}):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"class {k}", legendgroup="classes",
                                 legendgrouptitle_text="class", marker=dict(color=class_color(k), size=8),
                                 hoverinfo="skip"))


def embedding_maps(tables: Sequence[pd.DataFrame], samples: Sequence[pd.DataFrame | None] | None = None, *,
                   names: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """Several embedding maps side by side, on shared axes (one frame, e.g. "before / after training").

    Shared axes are only meaningful when the maps share one coordinate system: embed the runs
    together with :func:`~featgap.probes.embed_sequence` (``"pca"``: one projection fitted on
    every run's rows; ``"aligned_umap"``: UMAP slices tied sample by sample).

    Arguments:
        tables (list[DataFrame]): one ``Embedding.table`` per map.
        samples (list[DataFrame | None] | None): per map, the per-sample predictions
            (:func:`embedding_points`). (Default: None)
        names (list[str] | None): panel titles. (Default: "map 1", "map 2", ...)
        title (str | None): the figure's title.

    Shape:
        - output: a figure with ``3 × len(tables)`` traces (pairs, natural, adversarial per map,
          in :data:`TRACES` order), then one legend-only trace per class.

    Examples::
        >>> before, after = embed_sequence([(fa, fa_adv), (fb, fb_adv)], method="pca")
        >>> embedding_maps([before.table, after.table], [preds_a, preds_b], names=["standard", "PGD-AT"])
    """
    tables = list(tables)
    if not tables:
        raise FeatgapError("give at least one embedding table")
    samples = list(samples) if samples is not None else [None] * len(tables)
    names = list(names) if names is not None else [f"map {i + 1}" for i in range(len(tables))]
    if len(samples) != len(tables) or len(names) != len(tables):
        raise FeatgapError(f"{len(tables)} maps need as many samples tables and names "
                           f"(got {len(samples)} and {len(names)})")
    fig = make_subplots(rows=1, cols=len(tables), shared_xaxes="all", shared_yaxes="all", subplot_titles=names,
                        horizontal_spacing=0.04)
    for i, (table, info) in enumerate(zip(tables, samples)):
        add_embedding_map(fig, table, info, row=1, col=i + 1, showlegend=i == 0)
    labels = [v for info in samples if info is not None and "label" in info.columns for v in info["label"]]
    add_class_key(fig, labels)
    fig.update_layout(title=title, template="plotly_white", hovermode="closest", height=460,
                      width=None if len(tables) > 1 else 600, margin=dict(t=70, l=40, r=20, b=40))
    fig.update_xaxes(title_text="dim 1", showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(title_text="dim 2", col=1)
    return fig


def embedding_map(table: pd.DataFrame, samples: pd.DataFrame | None = None, *, title: str | None = None
                  ) -> go.Figure:
    """One embedding map: natural circles, adversarial crosses coloured by class, pair segments.

    Arguments:
        table (DataFrame): ``Embedding.table`` (``sample, input, dim1, dim2``) of
            :func:`~featgap.probes.embed`.
        samples (DataFrame | None): per-sample ``sample, label, nat_pred, adv_pred[, outcome]``
            for the colours and the hover text, e.g. :func:`~featgap.probes.gap_table`'s.
            Without it the points are grey and the hover names only the sample. (Default: None)
        title (str | None): the figure's title. (Default: the embedding method is not known
            here, so none)

    Shape:
        - output: a figure with traces pairs, natural, adversarial (:data:`TRACES`), then one
          legend-only trace per class. ``customdata`` of a point is its ``sample``.

    Examples::
        >>> emb = embed(feats["pool"], feats_adv["pool"], method="pca")
        >>> embedding_map(emb.table, gap_table(model, x, y, x_adv, layers="pool")).show()
    """
    return embedding_maps([table], [samples], names=[""], title=title)
