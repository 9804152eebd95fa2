"""One sample under attack, as figures: the images, the predictions, the attributions, the per-layer
gap and, for a model with two feature components (an AFD student), their sizes and angle.

* :func:`sample_images` — the natural image, the perturbation ``δ = x_adv − x`` amplified to be
  visible (``0.5 + a·δ``, mid-grey is "unchanged"; the factor ``a`` and ``max |δ|`` are stated
  in its title) and the adversarial image; grayscale or RGB;
* :func:`topk_bars` — the ``k`` most likely classes of the natural and of the adversarial input;
* :func:`attribution_maps` — the attribution heatmaps (``Σ_c |A_c|``) of both inputs for the same
  class, side by side, from :func:`featgap.probes.compare_attributions`, on one colour scale;
* :func:`sample_gap` — this sample's feature gap at every layer, from its
  :func:`featgap.probes.gap_table` rows;
* :func:`component_norms` — ‖f1‖, ‖f2‖ and cos(f1, f2) of natural and adversarial inputs from
  :func:`featgap.probes.component_norms` (means with 95 % intervals when several samples);
* :func:`sample_overview` — all of them in one figure (what
  :class:`featgap.widgets.SampleInspector` shows).

Typical use::

    cmp = compare_attributions(model, x[:1], y[:1], x_adv[:1], methods="saliency")
    attribution_maps(cmp).show()
    sample_images(x[0], x_adv[0]).show()

Nothing is computed here beyond arranging for display (the perturbation's amplification, the
union of two top-k lists); every number comes from a probe. A figure has a fixed number and
order of traces for given arguments, so a widget can copy a new figure's traces into the ones it
shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from featgap.errors import FeatgapError
from featgap.plots.gap import METRIC_LABELS, OUTCOME_COLORS, require_columns
from featgap.probes import GAP_METRICS, AttributionComparison, summarize

NAT_COLOR, ADV_COLOR = "#4c78a8", "#e45756"
"""Natural inputs blue, adversarial inputs red, in every figure of this module."""

COMPONENT_LABELS = {"f1_norm": "‖f1‖", "f2_norm": "‖f2‖", "cos_f1_f2": "cos(f1, f2)"}
"""The measures of :func:`featgap.probes.component_norms` that :func:`component_norms` draws."""

METHOD_LABELS = {"integrated_gradients": "integrated gradients", "saliency": "saliency",
                 "input_x_gradient": "input × gradient"}
"""How the attribution methods of :func:`featgap.probes.compare_attributions` read in titles."""

ImageLike = torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------- images

def image_array(x: ImageLike, name: str = "image") -> np.ndarray:
    """One image as a float array in [0, 1] for display: ``(H, W)`` grayscale or ``(H, W, 3)`` RGB.

    Accepts ``(C, H, W)`` with ``C`` 1 or 3, ``(1, C, H, W)`` or ``(H, W)``, as a tensor or an
    array, float in [0, 1] or uint8.
    """
    a = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 3 and a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise FeatgapError(f"{name} must be one image (C, H, W) with 1 or 3 channels, or (H, W); "
                           f"got shape {tuple(np.shape(x))}")
    return a


def amplified_perturbation(x_nat: ImageLike, x_adv: ImageLike, amplify: float | None = None
                           ) -> tuple[np.ndarray, float, float]:
    """``(0.5 + a·δ clipped to [0, 1], a, max |δ|)`` for ``δ = x_adv − x_nat``, ready to display.

    ``a`` defaults to ``0.5 / max |δ|`` (the largest change reaches black or white; 1 when
    nothing changed).
    """
    nat, adv = image_array(x_nat, "x_nat"), image_array(x_adv, "x_adv")
    if nat.shape != adv.shape:
        raise FeatgapError(f"x_nat and x_adv must have one shape, got {nat.shape} and {adv.shape}")
    delta = adv - nat
    biggest = float(np.abs(delta).max()) if delta.size else 0.0
    a = float(amplify) if amplify is not None else (0.5 / biggest if biggest > 0 else 1.0)
    return np.clip(0.5 + a * delta, 0.0, 1.0), a, biggest


def image_trace(img: np.ndarray, name: str) -> go.BaseTraceType:
    """A grayscale image as a ``go.Heatmap`` (grey scale, 0 black … 1 white), an RGB one as a ``go.Image``."""
    if img.ndim == 2:
        return go.Heatmap(z=img, zmin=0.0, zmax=1.0, colorscale="gray", showscale=False, name=name,
                          hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra>" + name + "</extra>")
    return go.Image(z=np.round(img * 255).astype(np.uint8), name=name)


def _images_of(x_nat: ImageLike, x_adv: ImageLike, amplify: float | None) -> tuple[list[go.BaseTraceType], list[str]]:
    nat, adv = image_array(x_nat, "x_nat"), image_array(x_adv, "x_adv")
    shown, a, biggest = amplified_perturbation(x_nat, x_adv, amplify)
    traces = [image_trace(nat, "natural"), image_trace(shown, "perturbation"), image_trace(adv, "adversarial")]
    titles = ["natural", f"perturbation ×{a:.3g}<br>max |δ| = {biggest:.3f}", "adversarial"]
    return traces, titles


def _square_pixels(fig: go.Figure, row: int, col: int) -> None:
    """Image rows top to bottom and square pixels in one subplot."""
    sub = fig.get_subplot(row, col)
    fig.update_yaxes(autorange="reversed", scaleanchor=sub.yaxis.anchor, constrain="domain", showticklabels=False,
                     row=row, col=col)
    fig.update_xaxes(constrain="domain", showticklabels=False, row=row, col=col)


def sample_images(x_nat: ImageLike, x_adv: ImageLike, *, amplify: float | None = None,
                  title: str | None = None) -> go.Figure:
    """Natural image, amplified perturbation (its factor and size in the title), adversarial image.

    Arguments:
        x_nat (Tensor | array): the natural image ``(C, H, W)`` (1 or 3 channels) or ``(H, W)``, in [0, 1] or uint8.
        x_adv (Tensor | array): its adversarial example, same shape.
        amplify (float | None): the factor ``a`` of the middle panel ``0.5 + a·δ``.
            (Default: ``0.5 / max |δ|``)
        title (str | None): the figure title.

    Shape:
        - output: a Figure of three traces, ``go.Heatmap`` for grayscale and ``go.Image`` for RGB.

    Examples::
        >>> x_adv = pgd(model, x, y, eps=0.3)
        >>> sample_images(x[0], x_adv[0]).show()
    """
    traces, titles = _images_of(x_nat, x_adv, amplify)
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.04)
    for col, t in enumerate(traces, start=1):
        fig.add_trace(t, row=1, col=col)
        _square_pixels(fig, 1, col)
    fig.update_layout(title=title, template="plotly_white", showlegend=False)
    return fig


# ----------------------------------------------------------------------------- predictions

def _probs(p: ImageLike, name: str) -> np.ndarray:
    a = p.detach().cpu().numpy() if torch.is_tensor(p) else np.asarray(p)
    a = np.squeeze(a.astype(np.float64))
    if a.ndim != 1 or a.size == 0:
        raise FeatgapError(f"{name} must be one vector of class probabilities (classes,), "
                           f"got shape {tuple(np.shape(p))}")
    return a


def _class_name(c: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)


def topk_traces(probs_nat: ImageLike, probs_adv: ImageLike, k: int = 5,
                class_names: Sequence[str] | None = None) -> list[go.Bar]:
    """The two bar traces of :func:`topk_bars` (natural, adversarial)."""
    nat, adv = _probs(probs_nat, "probs_nat"), _probs(probs_adv, "probs_adv")
    if nat.shape != adv.shape:
        raise FeatgapError(f"probs_nat and probs_adv must have one length, got {nat.size} and {adv.size}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise FeatgapError(f"k must be a positive integer, got {k!r}")
    k = min(k, nat.size)
    top = list(dict.fromkeys([*np.argsort(-nat, kind="stable")[:k].tolist(),
                              *np.argsort(-adv, kind="stable")[:k].tolist()]))
    top.sort(key=lambda c: (-max(nat[c], adv[c]), c))
    names = [_class_name(c, class_names) for c in top]
    return [go.Bar(x=names, y=nat[top], name="natural", marker_color=NAT_COLOR, legendgroup="natural",
                   hovertemplate="class %{x}: p = %{y:.3f}<extra>natural</extra>"),
            go.Bar(x=names, y=adv[top], name="adversarial", marker_color=ADV_COLOR, legendgroup="adversarial",
                   hovertemplate="class %{x}: p = %{y:.3f}<extra>adversarial</extra>")]


def topk_bars(probs_nat: ImageLike, probs_adv: ImageLike, k: int = 5, class_names: Sequence[str] | None = None, *,
              title: str | None = None) -> go.Figure:
    """The most likely classes of a natural input and of its adversarial example, side by side.

    The classes shown are the union of both top-``k`` lists (so at most ``2k``), most likely first;
    each has two bars, the natural and the adversarial probability.

    Arguments:
        probs_nat (Tensor | array): softmax probabilities of the natural input ``(classes,)``.
        probs_adv (Tensor | array): those of the adversarial input, same length.
        k (int): classes per list. (Default: 5)
        class_names (list[str] | None): names by class index. (Default: the indices)
        title (str | None): the figure title.

    Shape:
        - output: a Figure of two bar traces (natural, adversarial) over the same classes.

    Examples::
        >>> p = model(torch.stack([x[0], x_adv[0]])).softmax(1)
        >>> topk_bars(p[0], p[1], k=3).show()
    """
    fig = go.Figure(topk_traces(probs_nat, probs_adv, k, class_names))
    fig.update_layout(title=title or f"top-{k} predictions", barmode="group", xaxis_type="category",
                      xaxis_title="class", yaxis_title="probability", yaxis_range=[0, 1], template="plotly_white")
    return fig


# ----------------------------------------------------------------------------- attributions

def _attribution_of(comparison: AttributionComparison, method: str | None, index: int
                    ) -> tuple[list[go.Heatmap], list[str]]:
    if not isinstance(comparison, AttributionComparison):
        raise FeatgapError(f"attribution_maps needs compare_attributions(...) output, got {type(comparison).__name__}")
    method = comparison.methods[0] if method is None else method
    nat = comparison.heatmap(method, "natural")  # unknown methods fail here, with the methods it holds
    adv = comparison.heatmap(method, "adversarial")
    if not 0 <= index < len(nat):
        raise FeatgapError(f"index {index} is out of range: the comparison holds {len(nat)} sample(s)")
    a, b = nat[index].numpy(), adv[index].numpy()
    top = float(max(a.max(), b.max(), 1e-12))
    common = dict(zmin=0.0, zmax=top, colorscale="Inferno", hovertemplate="row %{y}, col %{x}: %{z:.3g}")
    traces = [go.Heatmap(z=a, name="natural", showscale=False, **common),
              go.Heatmap(z=b, name="adversarial", showscale=True, colorbar=dict(len=0.3, thickness=10), **common)]
    target = int(comparison.target[index])
    rows = comparison.table[comparison.table["method"] == method]
    row = rows.iloc[index]
    titles = [f"natural<br>{METHOD_LABELS.get(method, method)}, class {target}",
              f"adversarial<br>top-{comparison.topk:.0%} overlap {row['topk_overlap']:.2f}, ρ {row['spearman']:.2f}"]
    return traces, titles


def attribution_maps(comparison: AttributionComparison, method: str | None = None, index: int = 0, *,
                     title: str | None = None) -> go.Figure:
    """The attribution heatmaps of a natural input and of its adversarial example, for the same class.

    Both panels share one colour scale, so brighter means more attribution in either. The
    adversarial panel's title gives two of the probe's per-sample measures: the top-k overlap and
    the Spearman correlation of the two maps (1 = unchanged).

    Arguments:
        comparison (AttributionComparison): :func:`featgap.probes.compare_attributions` output.
        method (str | None): one of ``comparison.methods``. (Default: the first)
        index (int): which sample of the comparison. (Default: 0)
        title (str | None): the figure title.

    Shape:
        - output: a Figure of two ``go.Heatmap`` traces ``(H, W)``, the maps ``Σ_c |A_c|``.

    Examples::
        >>> cmp = compare_attributions(model, x[:4], y[:4], eps=0.3, methods="saliency")
        >>> attribution_maps(cmp, index=2).show()
    """
    traces, titles = _attribution_of(comparison, method, index)
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.06)
    for col, t in enumerate(traces, start=1):
        fig.add_trace(t, row=1, col=col)
        _square_pixels(fig, 1, col)
    fig.update_layout(title=title, template="plotly_white")
    return fig


# ----------------------------------------------------------------------------- per-layer gap of one sample

def _one_sample(table: pd.DataFrame, sample: int | None) -> pd.DataFrame:
    samples = list(dict.fromkeys(table["sample"].tolist()))
    if sample is None:
        if len(samples) != 1:
            raise FeatgapError(f"the table holds {len(samples)} samples: pass sample=...")
        sample = samples[0]
    rows = table[table["sample"] == sample]
    if len(rows) == 0:
        raise FeatgapError(f"no sample {sample} in the table (it holds {len(samples)} samples)")
    return rows


def sample_gap_trace(table: pd.DataFrame, sample: int | None = None, metric: str = "l2") -> tuple[go.Bar, str]:
    """The bar trace of :func:`sample_gap` and a one-line description of the sample's outcome."""
    if metric not in GAP_METRICS:
        raise FeatgapError(f"unknown gap metric {metric!r}; choose one of: {', '.join(GAP_METRICS)}")
    require_columns(table, ["sample", "layer", "outcome", "nat_pred", "adv_pred", metric],
                    "sample_gap needs a gap_table")
    rows = _one_sample(table, sample)
    outcome = str(rows["outcome"].iloc[0])
    bar = go.Bar(x=rows["layer"].astype(str).tolist(), y=rows[metric].to_numpy(dtype=float), name=f"{metric} gap",
                 marker_color=OUTCOME_COLORS.get(outcome, NAT_COLOR), showlegend=False,
                 hovertemplate=f"%{{x}}: {metric} %{{y:.4g}}<extra></extra>")
    label = f", label {rows['label'].iloc[0]}" if "label" in rows.columns else ""
    text = f"{metric} gap per layer<br>{outcome}{label}, {rows['nat_pred'].iloc[0]} → {rows['adv_pred'].iloc[0]}"
    return bar, text


def sample_gap(table: pd.DataFrame, sample: int | None = None, metric: str = "l2", *,
               title: str | None = None) -> go.Figure:
    """One sample's feature gap at every layer, coloured by its outcome.

    Arguments:
        table (DataFrame): a :func:`featgap.probes.gap_table` (columns ``sample, layer, outcome,
            nat_pred, adv_pred`` and the metric).
        sample (int | None): the ``sample`` to draw. (Default: the only one in the table)
        metric (str): one of :data:`featgap.probes.GAP_METRICS`. (Default: ``"l2"``)
        title (str | None): the figure title. (Default: the outcome and both predictions)

    Shape:
        - output: a Figure of one bar trace, one bar per layer.

    Examples::
        >>> table = gap_table(model, x, y, eps=0.3)
        >>> sample_gap(table, sample=7, metric="rel_l2").show()
    """
    bar, text = sample_gap_trace(table, sample, metric)
    fig = go.Figure([bar])
    fig.update_layout(title=title or text, xaxis_title="layer", yaxis_title=METRIC_LABELS[metric],
                      template="plotly_white")
    return fig


# ----------------------------------------------------------------------------- components

def component_traces(df: pd.DataFrame, sample: int | None = None, *, n_boot: int = 1000
                     ) -> tuple[list[go.Bar], list[go.Bar], str]:
    """The traces of :func:`component_norms`: norm bars (natural, adversarial), cosine bars (natural,
    adversarial) and a line on the confused head (``conf_hit``), when the table has it."""
    require_columns(df, ["input", *COMPONENT_LABELS], "component_norms needs featgap.probes.component_norms output")
    if sample is not None:
        require_columns(df, ["sample"], "component_norms needs featgap.probes.component_norms output")
        df = df[df["sample"] == sample]
        if len(df) == 0:
            raise FeatgapError(f"no sample {sample} in the component table")
    metrics = [*COMPONENT_LABELS, *(["conf_hit"] if "conf_hit" in df.columns else [])]
    s = summarize(df, by="input", metrics=metrics, n_boot=n_boot)
    norms, cosines, hits = [], [], []
    for kind, name, color in (("nat", "natural", NAT_COLOR), ("adv", "adversarial", ADV_COLOR)):
        row = s[s["input"] == kind]
        if len(row) == 0:
            raise FeatgapError(f"the component table has no {kind!r} rows (input column: nat / adv)")
        row = row.iloc[0]

        def bar(keys: list[str], show: bool) -> go.Bar:
            mean = np.array([row[f"{k}_mean"] for k in keys], dtype=float)
            return go.Bar(x=[COMPONENT_LABELS[k] for k in keys], y=mean, name=name, legendgroup=name, showlegend=show,
                          marker_color=color,
                          error_y=dict(type="data", symmetric=False,
                                       array=np.array([row[f"{k}_hi"] for k in keys], dtype=float) - mean,
                                       arrayminus=mean - np.array([row[f"{k}_lo"] for k in keys], dtype=float)),
                          hovertemplate=f"%{{x}} = %{{y:.4g}} (n = {int(row['n'])})<extra>{name}</extra>")

        norms.append(bar(["f1_norm", "f2_norm"], True))
        cosines.append(bar(["cos_f1_f2"], False))
        if "conf_hit_mean" in row:
            hit = row["conf_hit_mean"]
            hits.append(f"{kind} {('✓' if hit else '✗') if row['n'] == 1 else f'{hit:.0%}'}")
    text = ("f2 head hits ŷc: " + ", ".join(hits)) if hits else ""
    return norms, cosines, text


def component_norms(df: pd.DataFrame, sample: int | None = None, *, n_boot: int = 1000,
                    title: str | None = None) -> go.Figure:
    """‖f1‖, ‖f2‖ and cos(f1, f2) of a model's two feature components, natural vs adversarial.

    For AFD (arXiv 2401.14707) the intrinsic component ``f1`` is classified and the confused one
    ``f2`` is pushed to point away from it (cos → −1). With several samples the bars are means
    with 95 % bootstrap intervals, ``summarize(df, by="input", metrics=["f1_norm", "f2_norm",
    "cos_f1_f2", "conf_hit"])`` (:func:`featgap.probes.summarize`; ``conf_hit`` when present);
    with one sample, its values.

    Arguments:
        df (DataFrame): :func:`featgap.probes.component_norms` output (columns ``input, f1_norm,
            f2_norm, cos_f1_f2``; ``conf_hit`` adds the confused head's hit rate to the title).
        sample (int | None): draw only this ``sample``. (Default: all rows)
        n_boot (int): bootstrap resamples of the intervals. (Default: 1000)
        title (str | None): the figure title.

    Shape:
        - output: a Figure of four bar traces: norms natural, norms adversarial (left panel),
          cosine natural, cosine adversarial (right panel).

    Examples::
        >>> df = featgap.probes.component_norms(load_student("runs/afd"), x, y, eps=0.3)
        >>> featgap.plots.component_norms(df).show()
    """
    norms, cosines, text = component_traces(df, sample, n_boot=n_boot)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35], subplot_titles=("component norms", "cos(f1, f2)"))
    for t in norms:
        fig.add_trace(t, row=1, col=1)
    for t in cosines:
        fig.add_trace(t, row=1, col=2)
    fig.update_yaxes(range=[-1.05, 1.05], row=1, col=2)
    fig.update_layout(title=title or ("AFD components" + (f" — {text}" if text else "")), barmode="group",
                      template="plotly_white")
    return fig


# ----------------------------------------------------------------------------- all of it

def sample_overview(x_nat: ImageLike, x_adv: ImageLike, probs_nat: ImageLike, probs_adv: ImageLike,
                    comparison: AttributionComparison, gap_rows: pd.DataFrame, components: pd.DataFrame | None = None,
                    *, method: str | None = None, metric: str = "l2", k: int = 5,
                    class_names: Sequence[str] | None = None, heads: Mapping[str, tuple[int, int]] | None = None,
                    amplify: float | None = None, title: str | None = None) -> go.Figure:
    """Everything about one sample in one figure (what :class:`featgap.widgets.SampleInspector` shows).

    Row 1: :func:`sample_images`. Row 2: :func:`attribution_maps` and :func:`topk_bars`. Row 3:
    :func:`sample_gap` and, when ``components`` is given, :func:`component_norms`.

    Arguments:
        x_nat, x_adv: the image and its adversarial example (see :func:`sample_images`).
        probs_nat, probs_adv: their class probabilities (see :func:`topk_bars`).
        comparison (AttributionComparison): :func:`featgap.probes.compare_attributions` of this
            one sample (its index 0 is drawn).
        gap_rows (DataFrame): the :func:`featgap.probes.gap_table` rows of this sample.
        components (DataFrame | None): :func:`featgap.probes.component_norms` rows of this sample.
        method (str | None): the attribution method drawn. (Default: the comparison's first)
        metric (str): the gap measure. (Default: ``"l2"``)
        k (int), class_names (list[str] | None): as for :func:`topk_bars`.
        heads (dict | None): ``{"nat": (intrinsic, confused), "adv": (...)}``, the class each head
            of a component model predicts, shown in the component panel's title.
        amplify (float | None): as for :func:`sample_images`.
        title (str | None): the figure title.

    Shape:
        - output: a Figure whose traces are, in order: 3 images, 2 attribution maps, 2 top-k bar
          traces, 1 gap bar trace and, with ``components``, 2 norm and 2 cosine bar traces.

    Examples::
        >>> fig = sample_overview(x[0], x_adv[0], p_nat, p_adv, cmp, table[table["sample"] == 0])
        >>> fig.show()
    """
    images, image_titles = _images_of(x_nat, x_adv, amplify)
    maps, map_titles = _attribution_of(comparison, method, 0)
    topk = topk_traces(probs_nat, probs_adv, k, class_names)
    gap_bar, gap_text = sample_gap_trace(gap_rows, None, metric)
    with_components = components is not None
    if with_components:
        norms, cosines, hit_text = component_traces(components)
        head_text = ""
        if heads:
            head_text = "; ".join(f"{'natural' if kind == 'nat' else 'adversarial'}: f1 head → {h[0]}, "
                                  f"f2 head → {h[1]}" for kind, h in heads.items())
        comp_titles = ["‖f1‖, ‖f2‖" + (f"<br>{hit_text}" if hit_text else ""), "cos(f1, f2)"]
        specs = [[{}, {}, {}], [{}, {}, {}], [{}, {}, {}]]
        titles = [*image_titles, *map_titles, f"top-{k} predictions", gap_text, *comp_titles]
    else:
        specs = [[{}, {}, {}], [{}, {}, {}], [{"colspan": 3}, None, None]]
        titles = [*image_titles, *map_titles, f"top-{k} predictions", gap_text]
    fig = make_subplots(rows=3, cols=3, specs=specs, subplot_titles=titles, vertical_spacing=0.12,
                        horizontal_spacing=0.09, row_heights=[0.36, 0.36, 0.28])
    for col, t in enumerate(images, start=1):
        fig.add_trace(t, row=1, col=col)
        _square_pixels(fig, 1, col)
    for col, t in enumerate(maps, start=1):
        fig.add_trace(t, row=2, col=col)
        _square_pixels(fig, 2, col)
    maps_x, maps_y = fig.get_subplot(2, 2).xaxis.domain, fig.get_subplot(2, 2).yaxis.domain
    # the maps' colour scale as a horizontal bar under the adversarial map, clear of the top-k panel
    fig.data[len(images) + 1].colorbar.update(orientation="h", x=sum(maps_x) / 2, xanchor="center", y=maps_y[0],
                                             yanchor="top", len=maps_x[1] - maps_x[0], thickness=8)
    for t in topk:
        fig.add_trace(t, row=2, col=3)
    fig.update_xaxes(type="category", row=2, col=3)
    fig.update_yaxes(range=[0, 1], row=2, col=3)
    fig.add_trace(gap_bar, row=3, col=1)
    fig.update_yaxes(title_text=METRIC_LABELS[metric], row=3, col=1)
    if with_components:
        for t in norms:
            t.showlegend = False  # the top-k panel's legend already says natural / adversarial
            fig.add_trace(t, row=3, col=2)
        for t in cosines:
            fig.add_trace(t, row=3, col=3)
        fig.update_yaxes(range=[-1.05, 1.05], row=3, col=3)
    fig.update_annotations(font_size=13)  # the subplot titles
    if with_components and head_text:
        fig.add_annotation(text=head_text, xref="paper", yref="paper", x=1.0, y=-0.08, showarrow=False,
                           xanchor="right", font=dict(size=12))
    fig.update_layout(title=title, barmode="group", template="plotly_white", height=900,
                      margin=dict(b=70 if with_components else 40),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=1, xanchor="right"))
    return fig
