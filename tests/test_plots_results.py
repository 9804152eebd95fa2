"""Tests of featgap.plots.results: the results DataFrame against the runs' eval.json, the Wilson
interval against hand-computed values, and each figure's trace data against its inputs (the
alignment bars against a direct geometry_table call); failed sanity checks are named in red."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from featgap import runs
from featgap.errors import FeatgapError
from featgap.plots.results import (ACCURACIES, GREEN, RED, alignment_bars, gap_vs_robust, load_results, results_table,
                                   run_comparison, table_text, wilson_interval)
from featgap.probes import GAP_METRICS, geometry_table

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = ("standard", "pgd_at", "afd")


def plain(text: str) -> str:
    """A table cell's text as read: line breaks and unbreakable spaces as plain spaces."""
    return text.replace("<br>", " ").replace("\u00a0", " ")


def read_eval(run_dir) -> dict:
    return json.loads((run_dir / "eval.json").read_text())


def fake_run(src, dst, eval_dict: dict | None):
    """A run directory with ``src``'s config.json and the given eval.json (none when None)."""
    dst.mkdir(parents=True)
    shutil.copy(src / "config.json", dst / "config.json")
    if eval_dict is not None:
        runs.write_json(dst / "eval.json", eval_dict)
    return dst


@pytest.fixture(scope="module")
def results(widget_runs):
    return load_results([widget_runs[n] for n in NAMES])


# ----------------------------------------------------------------------------- wilson_interval

def test_wilson_interval_hand_computed():
    lo, hi = wilson_interval(80.0, 10)  # 8 of 10: (0.8 + 0.19207 ± 0.2365…) / 1.38415
    assert lo == pytest.approx(49.016, abs=1e-3) and hi == pytest.approx(94.331, abs=1e-3)
    lo, hi = wilson_interval(0.0, 40)  # never empty at 0 %, never below 0
    assert lo == 0.0 and hi == pytest.approx(100 * 3.8415 / (40 + 3.8415), abs=1e-2)
    lo, hi = wilson_interval(100.0, 40)
    assert hi == 100.0 and lo == pytest.approx(100 * 40 / (40 + 3.8415), abs=1e-2)
    assert all(math.isnan(v) for v in wilson_interval(float("nan"), 40) + wilson_interval(50.0, 0))


# ----------------------------------------------------------------------------- load_results

def test_load_results_matches_eval_json(widget_runs, results):
    assert list(results["run"]) == list(NAMES)
    for _, row in results.iterrows():
        ev = read_eval(widget_runs[row["run"]])
        assert row["method"] == runs.read_config(widget_runs[row["run"]])["config"]["method"]
        assert row["n"] == ev["n"] == 40 and row["eps"] == ev["eps"] and row["pgd_steps"] == ev["pgd_steps"]
        assert row["clean"] == ev["clean"] and row["pgd"] == ev["pgd"]
        assert math.isnan(row["autoattack"]) and math.isnan(row["robust"])  # the fixture skips AutoAttack
        for acc in ("clean", "pgd"):
            assert (row[f"{acc}_lo"], row[f"{acc}_hi"]) == wilson_interval(ev[acc], 40)
            assert row[f"{acc}_lo"] <= row[acc] <= row[f"{acc}_hi"]
        for m in GAP_METRICS:
            assert row[f"gap_{m}"] == pytest.approx(ev["feature_gap"][m])
        assert row["checks_total"] == len(ev["checks"])
        assert row["checks_passed"] == sum(c["ok"] for c in ev["checks"])
        assert row["failed_checks"] == "; ".join(c["name"] for c in ev["checks"] if not c["ok"])
        assert "AutoAttack skipped" in row["note"]


def test_run_without_eval_json_keeps_its_row_with_a_note(widget_runs, tmp_path):
    bare = fake_run(widget_runs["pgd_at"], tmp_path / "bare", None)
    df = load_results([widget_runs["standard"], bare])
    row = df.iloc[1]
    assert row["run"] == "bare" and "no evaluation" in row["note"]
    assert all(math.isnan(row[a]) for a in ACCURACIES) and math.isnan(row["gap_l2"])
    cells = results_table(df).data[0].cells.values
    assert cells[0][1] == "bare" and cells[3][1] == "—" and "no evaluation" in plain(cells[-1][1])
    fig = gap_vs_robust(df)
    assert np.isnan(fig.data[0].y[1])  # no point, but the run is not dropped
    json.dumps(fig.data[0].customdata.tolist(), allow_nan=False)  # customdata goes to the page as strict JSON


def test_new_and_older_eval_json(widget_runs, results, tmp_path):
    """Today's eval.json gives pgd_ce, pgd_margin, avg and avg_paper as recorded; an older one (pgd was
    CE-PGD alone, avg the paper's) keeps its numbers, under their present names, with a note."""
    for _, row in results.iterrows():
        ev = read_eval(widget_runs[row["run"]])
        assert row["pgd_ce"] == ev["pgd_ce"] and row["pgd_margin"] == ev["pgd_margin"]
        assert row["pgd"] <= min(row["pgd_ce"], row["pgd_margin"]) and "older" not in row["note"]
    old = {k: v for k, v in read_eval(widget_runs["pgd_at"]).items()
           if k not in ("pgd_ce", "avg_paper", "robust_attacks", "pgd_step_size")}
    old.update(pgd=70.0, pgd_margin=60.0, autoattack=50.0, robust=50.0, avg=70.0)
    row = load_results([fake_run(widget_runs["pgd_at"], tmp_path / "old", old)]).iloc[0]
    assert row["pgd"] == 70.0 and row["pgd_ce"] == 70.0 and row["avg_paper"] == 70.0 and math.isnan(row["avg"])
    assert "older eval.json" in row["note"] and "rerun featgap eval" in row["note"]


def test_clashing_run_names_get_their_parent(widget_runs, tmp_path):
    a = fake_run(widget_runs["standard"], tmp_path / "a" / "std", read_eval(widget_runs["standard"]))
    b = fake_run(widget_runs["standard"], tmp_path / "b" / "std", read_eval(widget_runs["standard"]))
    assert list(load_results([a, b])["run"]) == ["a/std", "b/std"]


def test_bad_runs_are_one_line_errors(tmp_path):
    with pytest.raises(FeatgapError, match="does not exist"):
        load_results([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatgapError, match="not a featgap run directory"):
        load_results([tmp_path / "empty"])


# ----------------------------------------------------------------------------- results_table

def test_results_table_cells(widget_runs, results):
    fig = results_table(results, "cosine")
    assert isinstance(fig, go.Figure) and len(fig.data) == 1 and fig.data[0].type == "table"
    header = fig.data[0].header.values
    cells = fig.data[0].cells.values
    assert plain(header[4]) == "PGD-5 % (CE ∧ margin) [95% CI]" and plain(header[7]) == "mean gap 1 − cos(f, f′)"
    assert plain(header[6]) == "robust % (every attack) [95% CI]"
    assert list(cells[0]) == list(NAMES)
    for i, name in enumerate(NAMES):
        ev = read_eval(widget_runs[name])
        lo, hi = wilson_interval(ev["clean"], 40)
        assert plain(cells[3][i]) == f"{ev['clean']:.1f} [{lo:.1f}, {hi:.1f}]"
        assert cells[5][i] == "—" and cells[6][i] == "—"  # AutoAttack not run: shown as such
        assert cells[7][i] == f"{ev['feature_gap']['cosine']:.4g}"


def test_table_text_never_leaves_plotly_a_space_to_wrap():
    text = table_text("more PGD steps do not help the model", 12)
    assert " " not in text and text.count("<br>") == 3 and plain(text) == "more PGD steps do not help the model"
    assert table_text("5/5") == "5/5"


def test_failed_checks_are_named_in_red_and_passed_ones_counted(widget_runs, tmp_path):
    ev = read_eval(widget_runs["pgd_at"])
    good = {**ev, "checks": [{**c, "ok": True} for c in ev["checks"]]}
    bad = {**ev, "checks": [{**c, "ok": i != 1} for i, c in enumerate(ev["checks"])]}
    df = load_results([fake_run(widget_runs["pgd_at"], tmp_path / "good", good),
                       fake_run(widget_runs["pgd_at"], tmp_path / "bad", bad)])
    cells = results_table(df).data[0].cells
    total = len(ev["checks"])
    assert cells.values[8][0] == f"{total}/{total}" and cells.font.color[8][0] == GREEN
    assert plain(cells.values[8][1]) == f"{total - 1}/{total} FAILED: {ev['checks'][1]['name']}"
    assert cells.font.color[8][1] == RED


# ----------------------------------------------------------------------------- gap_vs_robust

def test_gap_vs_robust_uses_pgd_without_autoattack_and_robust_with_it(widget_runs, results, tmp_path):
    fig = gap_vs_robust(results, "linf")
    trace = fig.data[0]
    assert len(fig.data) == 1 and list(trace.text) == list(NAMES)
    np.testing.assert_allclose(trace.x, [read_eval(widget_runs[n])["feature_gap"]["linf"] for n in NAMES])
    np.testing.assert_allclose(trace.y, [read_eval(widget_runs[n])["pgd"] for n in NAMES])
    ev = {**read_eval(widget_runs["pgd_at"]), "autoattack": 2.5, "robust": 2.5}
    df = load_results([fake_run(widget_runs["pgd_at"], tmp_path / "aa", ev)])
    t = gap_vs_robust(df).data[0]
    lo, hi = wilson_interval(2.5, 40)
    assert t.y[0] == 2.5 and t.error_y.array[0] == pytest.approx(hi - 2.5) and t.error_y.arrayminus[0] == pytest.approx(2.5 - lo)
    assert "AutoAttack" in str(t.customdata[0][2])


def test_unknown_metric_is_a_one_line_error(results):
    with pytest.raises(FeatgapError, match="unknown gap metric 'l3'"):
        gap_vs_robust(results, "l3")
    with pytest.raises(FeatgapError, match="needs columns"):
        results_table(pd.DataFrame({"run": ["a"]}))


# ----------------------------------------------------------------------------- alignment_bars

@pytest.fixture(scope="module")
def geometry(widget_runs):
    x, y = widget_runs["data"]
    return pd.concat([geometry_table(runs.load(widget_runs[n]), x, y, layers=["pool"], eps=0.3).assign(run=n)
                      for n in NAMES], ignore_index=True)


def test_alignment_bars_match_geometry_table(geometry):
    fig = alignment_bars(geometry)
    metrics = [c for c in geometry.columns if c not in ("layer", "run")]
    assert [t.name for t in fig.data] == metrics and all(t.type == "bar" for t in fig.data)
    for t in fig.data:
        assert list(t.x) == list(NAMES)
        np.testing.assert_allclose(t.y, geometry[t.name].to_numpy())
    assert [t.name for t in alignment_bars(geometry, ["alignment"]).data] == ["alignment"]
    with pytest.raises(FeatgapError, match="no column"):
        alignment_bars(geometry, ["knn_adv"])  # needs a reference set


def test_run_comparison_holds_the_three_figures_traces(results, geometry):
    fig = run_comparison(results, geometry, metric="rel_l2")
    assert [t.type for t in fig.data] == ["table", "scatter"] + ["bar"] * (len(geometry.columns) - 2)
    np.testing.assert_array_equal(fig.data[1].x, gap_vs_robust(results, "rel_l2").data[0].x)
    assert fig.data[0].cells.values == results_table(results, "rel_l2").data[0].cells.values
    for t, want in zip(fig.data[2:], alignment_bars(geometry).data):
        np.testing.assert_array_equal(t.y, want.y)
        assert t.x == want.x
    assert [t.type for t in run_comparison(results).data] == ["table", "scatter"]
