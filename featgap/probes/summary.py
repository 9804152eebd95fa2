"""Summaries of a per-sample table: the mean of each metric per group, with a bootstrap
confidence interval.

A mean over a few hundred samples is itself uncertain. The **percentile bootstrap** (Efron
1979) estimates how much: draw ``n`` samples *with replacement* from the group's ``n`` values,
take their mean, repeat ``n_boot`` times, and report the central ``ci`` share of those means
(e.g. the 2.5 % and 97.5 % percentiles for ``ci=0.95``). When the intervals of two groups (say,
the ``flipped`` and the ``robust`` samples) do not overlap, their difference is not an accident
of which samples were drawn.

::

    summarize(df)                            # by layer
    summarize(df, by=("layer", "outcome"))   # flipped vs robust vs wrong, per layer
    summarize(df, by=("layer", "label"))     # per class

The result is a ``pandas.DataFrame`` with the group columns, ``n`` and, per metric,
``{metric}_mean``, ``{metric}_lo`` and ``{metric}_hi``. Groups appear in order of first
appearance in the input (so layers keep the model's order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from featgap.errors import FeatgapError
from featgap.probes.feature_gap import GAP_METRICS


def bootstrap_mean_ci(values: np.ndarray, *, n_boot: int = 1000, ci: float = 0.95,
                      rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """The mean of ``values`` and a percentile-bootstrap confidence interval for it (Efron 1979).

    Resample the ``n`` values with replacement ``n_boot`` times; ``lo`` and ``hi`` are the
    ``(1 − ci)/2`` and ``(1 + ci)/2`` quantiles of the resampled means. A metric helper on one
    array. ``n_boot=0`` skips the resampling (``lo`` and ``hi`` are NaN). Resampling runs in
    chunks, vectorised, so 1,000 resamples of 1,000 values take milliseconds.

    Arguments:
        values (array): the per-sample values ``(n,)``, n ≥ 1.
        n_boot (int): resamples. (Default: 1000)
        ci (float): coverage in (0, 1). (Default: 0.95)
        rng (np.random.Generator | None): the resampling's generator. (Default: seeded with 0)

    Shape:
        - output: ``(mean, lo, hi)``, three floats.

    Examples::
        >>> mean, lo, hi = bootstrap_mean_ci(df.loc[df.layer == "pool", "l2"].to_numpy())
        >>> print(f"{mean:.3f} [{lo:.3f}, {hi:.3f}]")
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise FeatgapError("bootstrap needs a non-empty 1-D array of values")
    if not 0.0 < ci < 1.0:
        raise FeatgapError(f"ci must be in (0, 1); got {ci}")
    mean = float(v.mean())
    if n_boot <= 0:
        return mean, float("nan"), float("nan")
    rng = rng if rng is not None else np.random.default_rng(0)
    n = len(v)
    chunk = max(1, 2_000_000 // n)
    means = np.concatenate([v[rng.integers(0, n, size=(min(chunk, n_boot - s), n))].mean(axis=1)
                            for s in range(0, n_boot, chunk)])
    lo, hi = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return mean, float(lo), float(hi)


def summarize(df: pd.DataFrame, by: str | Sequence[str] = "layer", metrics: Sequence[str] | None = None, *,
              n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean and bootstrap confidence interval of each metric, per group of rows.

    Per group of equal ``by`` values and per metric ``m``: ``m_mean`` (the mean over the
    group's rows) and ``[m_lo, m_hi]``, the percentile-bootstrap interval of coverage ``ci``
    (:func:`bootstrap_mean_ci`, Efron 1979). Seeded: the same table gives the same intervals.
    Boolean columns summarise as rates (``adv_correct_mean`` is the robust accuracy).

    Arguments:
        df (DataFrame): a per-sample table (any probe's).
        by (str | list[str]): the grouping columns. (Default: ``"layer"``)
        metrics (list[str] | None): the columns to summarise. (Default: the feature-gap
            measures ``l2, linf, cosine, rel_l2`` that ``df`` has)
        n_boot (int): bootstrap resamples; 0 skips them (``lo``, ``hi`` NaN). (Default: 1000)
        ci (float): interval coverage. (Default: 0.95)
        seed (int): seeds one generator that runs through the groups in order. (Default: 0)

    Shape:
        - output: DataFrame with one row per group, in order of first appearance; columns
          ``by…, n`` and ``{m}_mean, {m}_lo, {m}_hi`` per metric.

    Examples::
        >>> s = summarize(gap_table(model, x, y, eps=0.3), by=["layer", "outcome"])
        >>> s[["layer", "outcome", "n", "l2_mean", "l2_lo", "l2_hi"]]
    """
    keys = [by] if isinstance(by, str) else list(by)
    columns = [str(c) for c in df.columns]
    for k in keys:
        if k not in df.columns:
            raise FeatgapError(f"cannot group by {k!r}: the table has columns {', '.join(columns)}")
    metrics = [m for m in GAP_METRICS if m in df.columns] if metrics is None else list(metrics)
    for m in metrics:
        if m not in df.columns:
            raise FeatgapError(f"no metric column {m!r}; the table has {', '.join(columns)}")
    if len(df) == 0:
        raise FeatgapError("cannot summarise an empty table")
    rng = np.random.default_rng(seed)
    group_of: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*(df[k].tolist() for k in keys))):
        group_of.setdefault(tuple(_scalar(v) for v in key), []).append(i)
    values = {m: df[m].to_numpy() for m in metrics}
    out: dict[str, list] = {k: [] for k in keys}
    out["n"] = []
    for m in metrics:
        out.update({f"{m}_mean": [], f"{m}_lo": [], f"{m}_hi": []})
    for key, rows in group_of.items():
        for k, v in zip(keys, key):
            out[k].append(v)
        out["n"].append(len(rows))
        idx = np.asarray(rows)
        for m in metrics:
            mean, lo, hi = bootstrap_mean_ci(values[m][idx], n_boot=n_boot, ci=ci, rng=rng)
            out[f"{m}_mean"].append(mean)
            out[f"{m}_lo"].append(lo)
            out[f"{m}_hi"].append(hi)
    return pd.DataFrame({k: np.asarray(v, dtype=object) if k in keys and isinstance(v[0], str) else np.asarray(v)
                         for k, v in out.items()})


def _scalar(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v
