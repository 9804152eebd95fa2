"""Results of several runs side by side: the results table, gap vs robust accuracy, alignment bars.

What a comparison shows, one figure function each:

* :func:`results_table` — per run: method, clean / PGD (worst of CE and margin) / AutoAttack /
  robust (worst of every attack) accuracy with their ``n`` and 95 % intervals, the mean feature
  gap, and the evaluation's sanity checks — ``6/6`` when all passed, else the names of the failed checks in red (a flag is shown, never hidden);
* :func:`gap_vs_robust` — one labelled point per run: mean feature gap against robust accuracy
  (does closing the gap buy robustness?);
* :func:`alignment_bars` — the set-level alignment measures of
  :func:`featgap.probes.geometry_table` (misalignment, alignment, uniformity, kNN / linear-probe
  accuracy), one panel per measure, one bar per run;
* :func:`run_comparison` — the three in one figure (what :class:`featgap.widgets.RunComparer` shows).

The numbers come from the runs' ``eval.json`` (written by ``featgap eval`` /
:func:`featgap.evaluate.evaluate`); :func:`load_results` reads them into the one DataFrame
these functions draw::

    df = load_results(["runs/demo/standard", "runs/demo/pgd_at"])
    results_table(df).show(); gap_vs_robust(df).show()
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from featgap import runs
from featgap.errors import FeatgapError
from featgap.probes import GAP_METRICS

ACCURACIES = ("clean", "pgd", "autoattack", "robust")
"""The accuracies of ``eval.json`` (percent) that :func:`load_results` gives with intervals."""

EXTRA_ACCURACIES = ("pgd_ce", "pgd_margin", "avg", "avg_paper")
"""Further numbers of ``eval.json`` (percent) that :func:`load_results` gives as they are, without intervals."""

ALIGNMENT_METRICS = ("misaligned_nat", "misaligned_adv", "alignment", "uniformity_nat", "uniformity_adv",
                     "knn_nat", "knn_adv", "linear_nat", "linear_adv")
"""The set-level measures of :func:`featgap.probes.geometry_table`, in the order they are drawn."""

RESULT_COLUMNS: dict[str, str] = {
    "run": "the run's name (its directory name; parent/name when two runs share one)",
    "path": "the run directory",
    "method": "training method (config.json)",
    "dataset": "dataset the run was trained on",
    "model": "architecture",
    "eval_file": "the evaluation file the row's numbers come from (runs.read_eval; '' when none)",
    "eps": "attack radius ε of the evaluation, pixel units (eval.json; the training ε without one)",
    "norm": "threat model of the evaluation: linf or l2",
    "n": "test images evaluated",
    "pgd_steps": "steps of the PGD evaluation attack",
    "{acc}": "accuracy in percent: clean; pgd = per image the worst of CE- and margin-PGD (CE alone in an "
             "eval.json written before the worst-case protocol, see note); autoattack; robust = per image the worst "
             "of every attack run (NaN without AutoAttack)",
    "{acc}_lo": "lower end of its 95 % Wilson score interval (percent)",
    "{acc}_hi": "upper end of that interval",
    "pgd_ce": "PGD accuracy with the cross-entropy objective alone, percent (NaN when not recorded)",
    "pgd_margin": "PGD accuracy with the logit-margin objective alone, percent (NaN when not recorded)",
    "avg": "(clean + pgd + autoattack) / 3 (NaN without AutoAttack)",
    "avg_paper": "(clean + pgd_ce + autoattack) / 3, the AFD paper's summary with CE-PGD alone",
    "gap_{metric}": "mean per-sample feature gap at the pooled features between natural and PGD inputs (eval.json)",
    "checks_passed": "sanity checks of the evaluation that passed",
    "checks_total": "sanity checks run",
    "failed_checks": "names of the failed checks, '; '-separated ('' when none failed)",
    "note": "what is missing ('' when nothing is), e.g. a run without an evaluation",
}
"""Every column of :func:`load_results`' DataFrame."""

GAP_LABELS = {"l2": "‖f − f′‖₂", "linf": "‖f − f′‖∞", "cosine": "1 − cos(f, f′)", "rel_l2": "‖f − f′‖₂ / ‖f‖₂"}
RED, GREEN, GREY = "#b00020", "#1b7f3b", "#777777"
LINE = 16
"""Pixels per line of table text (12 px font)."""


# ---------------------------------------------------------------- reading runs
def wilson_interval(percent: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of an accuracy of ``percent`` % measured on ``n`` images.

    With p̂ = percent / 100: (p̂ + z²/2n ± z·√(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n), in percent.
    Unlike p̂ ± z·√(p̂(1 − p̂)/n) it stays inside [0, 100] and is not empty at 0 % or 100 %.
    NaN when ``percent`` is NaN/None or ``n`` is 0.

    >>> wilson_interval(80.0, 10)     # 8 of 10 right
    (49.01..., 94.33...)
    """
    if percent is None or n is None or n <= 0 or not math.isfinite(percent):
        return float("nan"), float("nan")
    p, z2 = percent / 100.0, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def _names(paths: list[Path]) -> list[str]:
    """Directory names; parent/name for runs whose names clash."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def load_results(run_dirs: Sequence[str | Path], *, evaluation: dict | None = None,
                 evaluations: Sequence[dict | None] | None = None) -> pd.DataFrame:
    """The results of several runs as one DataFrame, one row per run (the input of the figures here).

    Reads each run's ``config.json`` and the evaluation :func:`featgap.runs.read_eval` picks by
    the settings ``evaluation`` (e.g. ``{"n": 150, "autoattack": True}``; ``None``: the largest,
    AutoAttack preferred; a legacy ``eval.json`` is read too), or takes ``evaluations``, one
    already-read evaluation dict (or ``None``) per run. The ``eval_file`` column names the file
    each row comes from. A run
    without an evaluation still gets its row — NaN accuracies and a ``note`` saying so — so a
    comparison never silently drops a run. Accuracies come with 95 % Wilson intervals
    (:func:`wilson_interval`) from their ``n``.

    Arguments:
        run_dirs (list[str | Path]): run directories (a directory that is not a run is a
            one-line :class:`FeatgapError`).

    Shape:
        - output: ``len(run_dirs)`` rows; columns as in :data:`RESULT_COLUMNS` (``clean``,
          ``clean_lo``, ``clean_hi``, … ``robust_hi``, ``gap_l2`` … ``gap_rel_l2``, …).

    Examples::
        >>> df = load_results(sorted(Path("runs/demo").iterdir()))
        >>> df[["run", "clean", "robust", "gap_l2", "checks_passed"]]
    """
    paths = [Path(p) for p in run_dirs]
    for p in paths:
        if not p.is_dir():
            raise FeatgapError(f"run {p} does not exist")
    if evaluations is not None and len(evaluations) != len(paths):
        raise FeatgapError(f"give one evaluation per run: {len(evaluations)} for {len(paths)} runs")
    rows = []
    for i, (path, name) in enumerate(zip(paths, _names(paths))):
        config = runs.read_config(path)
        cfg, ds = config.get("config", {}), config.get("dataset", {})
        row: dict = {"run": name, "path": str(path), "method": cfg.get("method", "?"),
                     "dataset": cfg.get("dataset", ds.get("name", "?")), "model": cfg.get("model", "?")}
        ev = evaluations[i] if evaluations is not None else runs.read_eval(path, **(evaluation or {}))
        row["eval_file"] = (ev or {}).get("file", "")
        if ev is None:
            eps = cfg.get("eps") if cfg.get("eps") is not None else ds.get("eps")
            row.update(eps=float("nan") if eps is None else float(eps), norm=cfg.get("norm", ""), n=0, pgd_steps=0)
            for acc in ACCURACIES:
                row.update({acc: np.nan, f"{acc}_lo": np.nan, f"{acc}_hi": np.nan})
            row.update({k: np.nan for k in EXTRA_ACCURACIES})
            row.update({f"gap_{m}": np.nan for m in GAP_METRICS})
            row.update(checks_passed=0, checks_total=0, failed_checks="",
                       note=f"no evaluation{' with these settings' if evaluation else ''}: run `featgap eval {path}`")
        else:
            n = int(ev.get("n") or 0)
            row.update(eps=float(ev.get("eps", np.nan)), norm=ev.get("norm", ""), n=n,
                       pgd_steps=int(ev.get("pgd_steps") or 0))
            for acc in ACCURACIES:
                value = ev.get(acc)
                value = np.nan if value is None else float(value)
                lo, hi = wilson_interval(value, n)
                row.update({acc: value, f"{acc}_lo": lo, f"{acc}_hi": hi})
            old_protocol = "pgd_ce" not in ev  # before the worst-case protocol: pgd was CE-PGD alone
            extra = {"pgd_ce": ev.get("pgd") if old_protocol else ev.get("pgd_ce"), "pgd_margin": ev.get("pgd_margin"),
                     "avg": ev.get("avg"), "avg_paper": ev.get("avg") if old_protocol else ev.get("avg_paper")}
            row.update({k: np.nan if v is None else float(v) for k, v in extra.items()})
            if old_protocol:
                row["avg"] = np.nan  # the old avg used CE-PGD alone: it is avg_paper
            gaps = ev.get("feature_gap") or {}
            row.update({f"gap_{m}": float(gaps[m]) if m in gaps else np.nan for m in GAP_METRICS})
            checks = ev.get("checks") or []
            failed = [c.get("name", "?") for c in checks if not c.get("ok", False)]
            notes = [] if checks else ["sanity checks were not run"]
            if old_protocol:
                notes.append("older eval.json: PGD is CE-PGD alone and robust leaves out margin-PGD; rerun featgap eval")
            if ev.get("autoattack") is None:
                notes.append("AutoAttack skipped")
            row.update(checks_passed=len(checks) - len(failed), checks_total=len(checks),
                       failed_checks="; ".join(failed), note="; ".join(notes))
        rows.append(row)
    columns = ["run", "path", "method", "dataset", "model", "eval_file", "eps", "norm", "n", "pgd_steps",
               *[f"{a}{s}" for a in ACCURACIES for s in ("", "_lo", "_hi")], *EXTRA_ACCURACIES,
               *[f"gap_{m}" for m in GAP_METRICS], "checks_passed", "checks_total", "failed_checks", "note"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- figures
def run_colors(names: Sequence[str]) -> dict[str, str]:
    """A fixed colour per run name (plotly's D3 palette, cycling), so every panel agrees."""
    palette = qualitative.D3
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _check_metric(metric: str) -> None:
    if metric not in GAP_METRICS:
        raise FeatgapError(f"unknown gap metric {metric!r}; choose one of: {', '.join(GAP_METRICS)}")


def _need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FeatgapError(f"{what} needs columns {missing} (give it load_results(...)'s DataFrame)")


def table_text(text: str, width: int = 24) -> str:
    """Cell text for a plotly table: wrapped at ``width`` characters with ``<br>``, spaces unbreakable.

    plotly.js wraps a cell that contains a space itself, measuring the text on the page; a
    table drawn while its widget is not yet laid out (a notebook output being created) then
    shows those cells blank. Text with our own line breaks and no breakable space is drawn as given.
    """
    lines = textwrap.wrap(str(text), width) or [str(text)]
    return "<br>".join(line.replace(" ", "\u00a0") for line in lines)


def _acc_cell(value: float, lo: float, hi: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.1f}<br>[{lo:.1f},\u00a0{hi:.1f}]" if math.isfinite(lo) else f"{value:.1f}"


def results_table(df: pd.DataFrame, metric: str = "l2") -> go.Figure:
    """The results table: one row per run, sanity flags in red.

    Columns: run, method, n, clean / PGD-k / AA / robust accuracy (percent, ``value [lo, hi]``
    with the 95 % Wilson interval; ``—`` when not run; PGD-k and robust are per-image worst cases,
    over CE- and margin-PGD and over every attack), the mean feature gap in ``metric``,
    the sanity checks (``passed/total`` in green, or the failed checks' names in red) and a note
    (e.g. "no eval.json").

    Arguments:
        df (DataFrame): :func:`load_results`' table.
        metric (str): gap measure to show, one of ``GAP_METRICS``. (Default: ``"l2"``)

    Examples::
        >>> results_table(load_results(["runs/demo/standard", "runs/demo/pgd_at"])).show()
    """
    _check_metric(metric)
    _need(df, ["run", "method", "n", *ACCURACIES, f"gap_{metric}", "checks_passed", "checks_total"], "results_table")
    steps = sorted({int(s) for s in df["pgd_steps"] if s}) if "pgd_steps" in df else []
    pgd_name = "PGD-" + "/".join(map(str, steps)) if steps else "PGD"
    header = ["<br>".join(table_text(line, 40) for line in h.split("\n")) for h in (
        "run", "method", "n", "clean %\n[95% CI]", f"{pgd_name} %\n(CE ∧ margin)\n[95% CI]", "AutoAttack %\n[95% CI]",
        "robust %\n(every attack)\n[95% CI]", f"mean gap\n{GAP_LABELS[metric]}", "sanity checks", "note")]
    checks, check_colors = [], []
    for passed, total, failed in zip(df["checks_passed"], df["checks_total"], df["failed_checks"]):
        if total == 0:
            checks.append("—")
            check_colors.append(GREY)
        elif passed == total:
            checks.append(f"{passed}/{total}")
            check_colors.append(GREEN)
        else:
            checks.append("<br>".join([f"{passed}/{total}\u00a0FAILED:"] + [table_text(f, 28) for f in failed.split("; ")]))
            check_colors.append(RED)
    cells = [[table_text(r, 16) for r in df["run"]], [table_text(m, 12) for m in df["method"]],
             [str(int(n)) if n else "—" for n in df["n"]],
             *[[_acc_cell(v, lo, hi) for v, lo, hi in zip(df[a], df[f"{a}_lo"], df[f"{a}_hi"])] for a in ACCURACIES],
             ["—" if not math.isfinite(g) else f"{g:.4g}" for g in df[f"gap_{metric}"]],
             checks, [table_text(x, 14) for x in df["note"]]]
    black = ["#222222"] * len(df)
    colors = [black] * 8 + [check_colors, [GREY] * len(df)]
    # Row heights fixed from the line counts: plotly.js measures them on the page otherwise, which
    # fails while a notebook output is still being laid out (the rows then overlap).
    def lines(texts: list[str]) -> int:
        return 1 + max((t.count("<br>") for t in texts), default=0)

    rows = max([lines([col[r] for col in cells]) for r in range(len(df))], default=1)
    table = go.Table(columnwidth=[1.2, 0.9, 0.5, 1.3, 1.3, 1.3, 1.3, 1.0, 2.2, 1.5],
                     header=dict(values=header, fill_color="#eeeeee", align="left", font=dict(size=12),
                                 height=LINE * lines(header) + 10),
                     cells=dict(values=cells, align="left", font=dict(color=colors, size=12), height=LINE * rows + 10),
                     name="results")
    fig = go.Figure(table)
    fig.update_layout(title="Results (eval.json)", height=120 + (LINE * rows + 10) * max(len(df), 1),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def _robust_y(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Robust accuracy with its interval where AutoAttack ran, else PGD's; and which it is."""
    has_aa = df["robust"].notna().to_numpy()
    y = np.where(has_aa, df["robust"], df["pgd"]).astype(float)
    lo = np.where(has_aa, df["robust_lo"], df["pgd_lo"]).astype(float)
    hi = np.where(has_aa, df["robust_hi"], df["pgd_hi"]).astype(float)
    source = ["PGD + AutoAttack" if a else f"PGD-{int(s)} only (AutoAttack skipped)" if s else "not evaluated"
              for a, s in zip(has_aa, df["pgd_steps"])]
    return y, lo, hi, source


def gap_vs_robust(df: pd.DataFrame, metric: str = "l2", colors: Mapping[str, str] | None = None) -> go.Figure:
    """Mean feature gap (x) against robust accuracy (y), one labelled point per run.

    Robust accuracy is the worst case over PGD and AutoAttack when AutoAttack ran, else the PGD
    accuracy (the hover says which); the vertical bar is its 95 % Wilson interval. Runs without
    ``eval.json`` have no point. One trace, whatever the number of runs.

    Arguments:
        df (DataFrame): :func:`load_results`' table.
        metric (str): gap measure on the x axis, one of ``GAP_METRICS``. (Default: ``"l2"``)
        colors (dict | None): colour per run name. (Default: :func:`run_colors` in table order)

    Examples::
        >>> gap_vs_robust(load_results(run_dirs), metric="cosine").show()
    """
    _check_metric(metric)
    _need(df, ["run", "method", "pgd", "pgd_lo", "pgd_hi", "robust", "robust_lo", "robust_hi", "clean",
               "pgd_steps", f"gap_{metric}"], "gap_vs_robust")
    colors = dict(colors) if colors is not None else run_colors(list(df["run"]))
    y, lo, hi, source = _robust_y(df)
    x = df[f"gap_{metric}"].to_numpy(dtype=float)
    # customdata travels as JSON (not as a binary array): a missing clean accuracy is null, never NaN,
    # which JSON cannot carry (a FigureWidget would log "Out of range float values" for it).
    clean = [float(c) if np.isfinite(c) else None for c in df["clean"].to_numpy(dtype=float)]
    custom = np.array([[m, c, s] for m, c, s in zip(df["method"], clean, source)], dtype=object).reshape(len(df), 3)
    trace = go.Scatter(
        x=x, y=y, text=list(df["run"]), mode="markers+text", textposition="top center", name="runs",
        marker=dict(size=12, color=[colors.get(r, GREY) for r in df["run"]], line=dict(width=1, color="white")),
        error_y=dict(type="data", symmetric=False, array=hi - y, arrayminus=y - lo, thickness=1.2, width=4),
        customdata=custom,
        hovertemplate=("<b>%{text}</b> (%{customdata[0]})<br>mean gap %{x:.4g}<br>robust %{y:.1f}% "
                       "(%{customdata[2]})<br>clean %{customdata[1]:.1f}%<extra></extra>"),
        showlegend=False)
    fig = go.Figure(trace)
    fig.update_layout(title="Feature gap vs robust accuracy", margin=dict(l=60, r=20, t=40, b=50))
    fig.update_xaxes(title=f"mean feature gap {GAP_LABELS[metric]} (pooled features, eval.json)")
    fig.update_yaxes(title="robust accuracy % (PGD where AutoAttack was skipped)")
    return fig


def alignment_bars(df: pd.DataFrame, metrics: Sequence[str] | None = None,
                   colors: Mapping[str, str] | None = None) -> go.Figure:
    """The alignment measures of :func:`featgap.probes.geometry_table`, side by side per run.

    One panel per measure (misalignment rates, alignment, uniformity, and kNN / linear-probe
    accuracies when the table has them), one bar per run (per run · layer when the table holds
    several layers). One bar trace per panel, whatever the number of runs.

    Arguments:
        df (DataFrame): ``geometry_table`` outputs stacked, with a ``run`` column added
            (``pd.concat([geometry_table(m, x, y, eps=0.3).assign(run=name) for ...])``).
        metrics (list[str] | None): measures to draw. (Default: those of
            :data:`ALIGNMENT_METRICS` the table has)
        colors (dict | None): colour per run name. (Default: :func:`run_colors` in table order)

    Examples::
        >>> g = pd.concat([geometry_table(runs.load(d), x, y, eps=0.3, layers="pool").assign(run=d.name) for d in dirs])
        >>> alignment_bars(g).show()
    """
    _need(df, ["run", "layer"], "alignment_bars")
    metrics = [m for m in ALIGNMENT_METRICS if m in df.columns] if metrics is None else list(metrics)
    unknown = [m for m in metrics if m not in df.columns]
    if unknown or not metrics:
        raise FeatgapError(f"alignment_bars: the table has no column {unknown or 'of ' + ', '.join(ALIGNMENT_METRICS)}")
    run_names = list(dict.fromkeys(df["run"]))
    colors = dict(colors) if colors is not None else run_colors(run_names)
    several_layers = df["layer"].nunique() > 1
    x = [f"{r} · {l}" for r, l in zip(df["run"], df["layer"])] if several_layers else list(df["run"])
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics), horizontal_spacing=0.35 / len(metrics))
    for i, m in enumerate(metrics, start=1):
        fig.add_trace(go.Bar(x=x, y=df[m].to_numpy(dtype=float), name=m, showlegend=False,
                             marker=dict(color=[colors.get(r, GREY) for r in df["run"]]),
                             customdata=list(df["layer"]),
                             hovertemplate=f"%{{x}}<br>{m} = %{{y:.4g}}<br>layer %{{customdata}}<extra></extra>"),
                      row=1, col=i)
    layers = ", ".join(map(str, dict.fromkeys(df["layer"])))
    fig.update_layout(title=f"Alignment measures at {layers} (geometry_table)", margin=dict(l=40, r=20, t=70, b=40))
    return fig


def run_comparison(results: pd.DataFrame, geometry: pd.DataFrame | None = None, *, metric: str = "l2",
                   colors: Mapping[str, str] | None = None) -> go.Figure:
    """:func:`results_table`, :func:`gap_vs_robust` and (with ``geometry``) :func:`alignment_bars` in one figure.

    Rows: the table; the scatter; the alignment panels. The traces are exactly those of the three
    functions (1 table, 1 scatter, one bar per alignment measure), so a widget can update them
    in place from a new call with the same arguments.

    Arguments:
        results (DataFrame): :func:`load_results`' table.
        geometry (DataFrame | None): stacked ``geometry_table`` outputs with a ``run`` column.
        metric (str): gap measure. colors (dict | None): colour per run name.

    Examples::
        >>> run_comparison(load_results(dirs), geometry, metric="l2").write_html("compare.html")
    """
    colors = dict(colors) if colors is not None else run_colors(list(results["run"]))
    table, scatter = results_table(results, metric), gap_vs_robust(results, metric, colors)
    bars = alignment_bars(geometry, colors=colors) if geometry is not None else None
    cols = len(bars.data) if bars is not None else 1
    specs = [[{"type": "table", "colspan": cols}] + [None] * (cols - 1),
             [{"type": "xy", "colspan": cols}] + [None] * (cols - 1)]
    titles = ["", scatter.layout.title.text]
    cell = table.data[0]
    heights = [cell.header.height + len(results) * cell.cells.height + 10, 400]  # pixels: the whole table, the scatter
    if bars is not None:
        specs.append([{"type": "xy"}] * cols)
        titles += [a.text for a in bars.layout.annotations]
        heights.append(260)
    gap, top, bottom = 90, 60, 50
    area = sum(heights) + gap * (len(heights) - 1)
    fig = make_subplots(rows=len(specs), cols=cols, specs=specs, subplot_titles=titles, row_heights=heights,
                        vertical_spacing=gap / area, horizontal_spacing=0.35 / cols)
    fig.add_trace(table.data[0], row=1, col=1)
    fig.add_trace(scatter.data[0], row=2, col=1)
    fig.update_xaxes(title=scatter.layout.xaxis.title.text, row=2, col=1)
    fig.update_yaxes(title=scatter.layout.yaxis.title.text, row=2, col=1)
    if bars is not None:
        for i, trace in enumerate(bars.data, start=1):
            fig.add_trace(trace, row=3, col=i)
    fig.update_layout(title=f"Run comparison — mean feature gap {GAP_LABELS[metric]}", height=area + top + bottom,
                      width=1000, margin=dict(l=60, r=20, t=top, b=bottom))
    return fig
