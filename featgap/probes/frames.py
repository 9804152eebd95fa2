"""The tables probes return: tidy pandas DataFrames, their columns documented once, and the CSV writer.

Every per-sample probe returns a ``pandas.DataFrame`` in *tidy* form — one row per observation,
one column per variable: one row per sample × layer (× ε, × input, × method), so that
``groupby``, plotly express and :func:`~featgap.probes.summarize` work on any of them::

    df = gap_table(model, x, y, eps=0.3)
    df.groupby(["layer", "outcome"])["l2"].mean()
    df[df.outcome == "flipped"]                      # the rows the attack flipped
    px.box(df, x="layer", y="l2", color="outcome")
    to_csv(df, "gap.csv")                            # what `featgap probe` writes

:data:`COLUMNS` explains every column name any probe uses; a probe's docstring lists which it
returns. Columns keep their natural dtypes: ``sample``, ``label`` and predictions are integers,
``*_correct``/``conf_hit`` booleans, measures float32 as computed (float64 for set-level
measures and summaries), names (``layer``, ``outcome``, ``input``, ``method``) strings.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS: dict[str, str] = {
    # which observation
    "run": "the run's name (load_trajectory)",
    "epoch": "training epoch the row was recorded after (load_trajectory)",
    "eps": "attack radius ε in pixel units (gap_vs_eps)",
    "sample": "index of the image in the x given to the probe (0 … N−1)",
    "label": "its true class y",
    "layer": "the layer probed: a module name, a graph node or 'logits'",
    "input": "'nat' (natural image) or 'adv' (its adversarial example) (component_norms)",
    "method": "attribution method (compare_attributions)",
    # feature gap (gap_table, gap_vs_eps), f = features of x, f' = of x_adv
    "l2": "‖f − f'‖₂: how far the attack moves the features; for attribution maps ‖A/‖A‖₁ − A'/‖A'‖₁‖₂, in [0, 2]",
    "linf": "max_i |f_i − f'_i|: the largest change of one feature (the AFD paper's measure)",
    "cosine": "1 − cos(f, f'): change of direction (0 same, 1 orthogonal, 2 opposite); for attribution maps 1 − cos(A, A')",
    "rel_l2": "‖f − f'‖₂ / ‖f‖₂: the L2 gap relative to the natural feature's size",
    "nat_pred": "the model's class for x",
    "adv_pred": "the model's class for x_adv",
    "nat_correct": "nat_pred == label",
    "adv_correct": "adv_pred == label",
    "outcome": "robust (right before and after the attack), flipped (right, then wrong), wrong (wrong already)",
    # AFD components (component_norms)
    "f1_norm": "‖f1‖₂ of the intrinsic component",
    "f2_norm": "‖f2‖₂ of the confused component",
    "cos_f1_f2": "cos(f1, f2); AFD's elimination loss drives it toward −1",
    "y_conf": "ŷc: the class the confused head should predict (the model's confused_target)",
    "conf_hit": "the confused head predicts ŷc",
    # geometry (local_lipschitz per sample; geometry_table one row per layer)
    "lipschitz": "max over the ε-ball of ‖f(x') − f(x)‖₁ / ‖x' − x‖ (estimated from below), or the ratio at x_adv",
    "misaligned_nat": "share of natural features nearer another class's centroid than their own",
    "misaligned_adv": "the same for adversarial features",
    "alignment": "Wang & Isola alignment E‖ẑ − ẑ'‖₂² of natural/adversarial pairs, in [0, 4]",
    "uniformity_nat": "Wang & Isola uniformity log E exp(−2‖ẑ_i − ẑ_j‖²) of natural features, in [−8, 0]",
    "uniformity_adv": "the same for adversarial features",
    "knn_nat": "k-NN accuracy of natural features (neighbours among the reference's)",
    "knn_adv": "k-NN accuracy of adversarial features",
    "linear_nat": "linear-probe accuracy (fitted on the reference) of natural features",
    "linear_adv": "linear-probe accuracy of adversarial features",
    # attribution maps (compare_attributions), A = map of x, A' = of x_adv, for the same class
    "target": "the class whose logit both maps explain",
    "topk_overlap": "share of the top-k pixels of A also among the top-k of A' (1 same places, 0 disjoint)",
    "spearman": "Spearman rank correlation of the two heatmaps (1 same ranking)",
    # embeddings (Embedding.table)
    "dim1": "first coordinate of the map (dim2, dim3, … likewise)",
    # summaries (summarize, load_trajectory)
    "n": "number of samples in the group",
    "metric": "name of the summarised measure (load_trajectory)",
    "mean": "mean of the measure over the group",
    "lo": "lower end of the percentile-bootstrap confidence interval of the mean (NaN without resampling)",
    "hi": "upper end of that interval",
}
"""Every column name a probe returns, with its meaning. :func:`~featgap.probes.summarize` adds
``{metric}_mean``, ``{metric}_lo`` and ``{metric}_hi`` per metric (see ``mean``, ``lo``, ``hi``)."""


def frame(columns: Mapping[str, Any]) -> pd.DataFrame:
    """A DataFrame from equal-length columns (tensors are moved to the CPU and converted)."""
    return pd.DataFrame({k: _column(v) for k, v in columns.items()})


def concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack frames with the same columns, one under the other, with a fresh 0 … n−1 index."""
    return pd.concat(list(frames), ignore_index=True)


def _column(values: Any) -> Any:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return values


def to_csv(df: pd.DataFrame, path: str | Path | None = None, digits: int = 6) -> str:
    """CSV text of a probe's DataFrame, the file ``featgap probe`` writes.

    No index; floats to ``digits`` significant digits (``%g``), booleans as 1/0, NaN as
    ``nan``, everything else as ``str``. Unlike ``df.to_csv`` it rounds floats and writes
    booleans as numbers, so the file stays small and reads the same in any tool
    (``pd.read_csv`` reads it back). Written atomically to ``path`` when given.

    Arguments:
        df (DataFrame): any table.
        path (str | Path | None): where to write. (Default: None, only return the text)
        digits (int): significant digits of floats. (Default: 6)

    Shape:
        - output: the CSV text, one header line and one line per row.

    Examples::
        >>> to_csv(gap_table(model, x, y, eps=0.3), "gap.csv")
        >>> pd.read_csv("gap.csv").groupby("layer")["l2"].mean()
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = [str(c) for c in df.columns]
    w.writerow(names)
    cols = [df[c].tolist() for c in df.columns]
    for row in zip(*cols):
        w.writerow([_fmt(v, digits) for v in row])
    text = buf.getvalue()
    if path is not None:
        from featgap.runs import write_text

        write_text(Path(path), text)
    return text


def _fmt(v: Any, digits: int) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.{digits}g}"
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)
