"""featgap.plots.gap: the figures draw exactly what the probes computed — bars at summarize's means
with error bars reaching its lo/hi, one distribution trace per outcome holding that outcome's
samples, bands over ε — and a table without a needed column is a one-line error naming it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from featgap.errors import FeatgapError
from featgap.plots.gap import (OUTCOME_COLORS, gap_by_layer, gap_distribution, gap_overview, gap_vs_eps,
                               require_columns)
from featgap.probes import OUTCOMES, gap_table, summarize

LAYERS = ("stage1", "stage2", "pool")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """A gap_table-shaped table with every outcome present and known values (30 samples × 3 layers)."""
    rng = np.random.default_rng(1)
    n = 30
    outcome = np.array(["robust"] * 12 + ["flipped"] * 10 + ["wrong"] * 8, dtype=object)
    parts = []
    for k, layer in enumerate(LAYERS):
        parts.append(pd.DataFrame({
            "sample": np.arange(n), "label": rng.integers(0, 10, n), "layer": np.full(n, layer, dtype=object),
            "l2": rng.gamma(2.0, 1.0 + k, n).astype(np.float32), "linf": rng.random(n).astype(np.float32),
            "cosine": rng.random(n).astype(np.float32), "rel_l2": rng.random(n).astype(np.float32),
            "nat_pred": np.zeros(n, dtype=int), "adv_pred": np.zeros(n, dtype=int),
            "nat_correct": outcome != "wrong", "adv_correct": outcome == "robust", "outcome": outcome}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def eps_table(table) -> pd.DataFrame:
    """A gap_vs_eps-shaped table: the same samples at three radii, gaps growing with ε."""
    parts = []
    for e in (0.0, 0.1, 0.3):
        t = table.copy()
        t["l2"] = t["l2"] * e
        t.insert(0, "eps", np.full(len(t), e))
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    return text


# ----------------------------------------------------------------------------- bars per layer

@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_bars_are_summarize_means_with_its_interval(table, metric):
    s = summarize(table, metrics=[metric])
    fig = gap_by_layer(s, metric)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    bar = fig.data[0]
    assert list(bar.x) == list(LAYERS)
    np.testing.assert_allclose(bar.y, s[f"{metric}_mean"])
    # the error bars reach exactly the bootstrap interval [lo, hi]
    np.testing.assert_allclose(np.asarray(bar.y) + np.asarray(bar.error_y.array), s[f"{metric}_hi"])
    np.testing.assert_allclose(np.asarray(bar.y) - np.asarray(bar.error_y.arrayminus), s[f"{metric}_lo"])
    assert bar.error_y.symmetric is False


def test_bars_by_outcome_one_trace_per_outcome_in_fixed_colours(table):
    s = summarize(table, by=("layer", "outcome"))
    fig = gap_by_layer(s, "l2")
    assert [t.name for t in fig.data] == list(OUTCOMES)
    for trace, outcome in zip(fig.data, OUTCOMES):
        rows = s[s["outcome"] == outcome]
        assert trace.marker.color == OUTCOME_COLORS[outcome]
        np.testing.assert_allclose(trace.y, rows["l2_mean"])
        np.testing.assert_allclose(np.asarray(trace.y) + np.asarray(trace.error_y.array), rows["l2_hi"])


def test_highlight_fades_the_other_layers(table):
    bar = gap_by_layer(summarize(table), highlight="stage2").data[0]
    assert list(bar.marker.opacity) == [0.45, 1.0, 0.45]


# ----------------------------------------------------------------------------- distributions

@pytest.mark.parametrize("kind,trace_type", [("box", go.Box), ("violin", go.Violin), ("histogram", go.Histogram)])
def test_distribution_one_trace_per_outcome_holding_its_samples(table, kind, trace_type):
    fig = gap_distribution(table, "l2", layer="stage2", kind=kind)
    assert len(fig.data) == 3
    rows = table[table["layer"] == "stage2"]
    for trace, outcome in zip(fig.data, OUTCOMES):
        assert isinstance(trace, trace_type)
        assert trace.name.startswith(outcome)
        assert trace.marker.color == OUTCOME_COLORS[outcome]
        values = trace.x if kind == "histogram" else trace.y
        np.testing.assert_allclose(values, rows.loc[rows["outcome"] == outcome, "l2"])


def test_distribution_of_every_layer_keeps_layers_on_x(table):
    fig = gap_distribution(table, "rel_l2")
    robust = table[table["outcome"] == "robust"]
    assert list(fig.data[0].x) == robust["layer"].tolist()
    np.testing.assert_allclose(fig.data[0].y, robust["rel_l2"])


def test_an_outcome_without_samples_keeps_its_empty_trace(table):
    only_robust = table[table["outcome"] == "robust"]
    fig = gap_distribution(only_robust, layer="pool")
    assert len(fig.data) == 3 and len(fig.data[1].y) == 0 and len(fig.data[2].y) == 0


def test_distribution_of_a_real_gap_table():
    from featgap.models import create

    torch.manual_seed(0)
    model = create("smallcnn", 10, 1)
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    t = gap_table(model, x, y, eps=0.1, steps=2)
    fig = gap_distribution(t, "linf", layer="pool")
    pool = t[t["layer"] == "pool"]
    got = np.concatenate([np.asarray(tr.y, dtype=float) for tr in fig.data])
    want = np.concatenate([pool.loc[pool["outcome"] == o, "linf"].to_numpy(dtype=float) for o in OUTCOMES])
    np.testing.assert_allclose(got, want)


# ----------------------------------------------------------------------------- against ε

def test_gap_vs_eps_lines_and_bands_are_summarize_by_eps_and_layer(eps_table):
    fig = gap_vs_eps(eps_table, "l2")
    s = summarize(eps_table, by=("eps", "layer"), metrics=["l2"])
    assert len(fig.data) == 2 * len(LAYERS)
    for i, layer in enumerate(LAYERS):
        band, line = fig.data[2 * i], fig.data[2 * i + 1]
        rows = s[s["layer"] == layer].sort_values("eps")
        assert line.name == layer
        np.testing.assert_allclose(line.x, rows["eps"])
        np.testing.assert_allclose(line.y, rows["l2_mean"])
        np.testing.assert_allclose(band.y, np.concatenate([rows["l2_lo"], rows["l2_hi"].to_numpy()[::-1]]))
        assert band.fill == "toself"
    # the summary itself draws the same figure
    again = gap_vs_eps(s, "l2")
    for a, b in zip(fig.data, again.data):
        np.testing.assert_allclose(a.y, b.y)


def test_gap_vs_eps_chosen_layers(eps_table):
    fig = gap_vs_eps(eps_table, "l2", layers=["pool"])
    assert [t.name for t in fig.data][1] == "pool" and len(fig.data) == 2


# ----------------------------------------------------------------------------- overview

def test_overview_has_bars_then_the_three_outcomes(table):
    s = summarize(table)
    fig = gap_overview(s, table, "linf", "pool")
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Box", "Box", "Box"]
    np.testing.assert_allclose(fig.data[0].y, s["linf_mean"])
    pool = table[table["layer"] == "pool"]
    np.testing.assert_allclose(fig.data[2].y, pool.loc[pool["outcome"] == "flipped", "linf"])
    assert fig.data[0].xaxis == "x" and fig.data[1].xaxis == "x2"
    assert "pool" in fig.layout.annotations[1].text
    assert gap_overview(s, table).layout.annotations[1].text.endswith("pool")  # default: the last layer


# ----------------------------------------------------------------------------- bad input

def test_missing_columns_are_named_in_one_line(table, eps_table):
    s = summarize(table)
    with pytest.raises(FeatgapError) as err:
        gap_by_layer(s.drop(columns=["l2_hi", "n"]))
    text = _one_line(err)
    assert "l2_hi" in text and "n" in text and "gap_by_layer" in text
    with pytest.raises(FeatgapError) as err:
        gap_distribution(table.drop(columns=["outcome"]))
    assert "outcome" in _one_line(err)
    with pytest.raises(FeatgapError) as err:
        gap_vs_eps(table, "l2")  # no eps column
    assert "eps" in _one_line(err)
    with pytest.raises(FeatgapError) as err:
        gap_overview(s, table.drop(columns=["linf"]), "linf")
    assert "linf" in _one_line(err)
    with pytest.raises(FeatgapError) as err:
        require_columns([1, 2], ["layer"], "x")
    assert "DataFrame" in _one_line(err)


def test_bad_choices_are_one_line(table, eps_table):
    s = summarize(table)
    for call, needle in [(lambda: gap_by_layer(s, "l3"), "l3"),
                         (lambda: gap_distribution(table, layer="fc9"), "fc9"),
                         (lambda: gap_distribution(table, kind="pie"), "pie"),
                         (lambda: gap_distribution(eps_table), "eps"),
                         (lambda: gap_vs_eps(eps_table, layers=["fc9"]), "fc9")]:
        with pytest.raises(FeatgapError) as err:
            call()
        assert needle in _one_line(err)


# ----------------------------------------------------------------------------- several runs

def test_gap_by_layer_runs_one_bar_trace_per_run_at_its_summary(table):
    from featgap.plots.gap import gap_by_layer_runs

    other = table.assign(l2=table["l2"] * 2)
    summaries = {"a": summarize(table, metrics=["l2"]), "b": summarize(other, metrics=["l2"])}
    fig = gap_by_layer_runs(summaries, "l2", colors={"a": "#111111", "b": "#222222"})
    assert [t.name for t in fig.data] == ["a", "b"] and fig.layout.barmode == "group"
    for trace, (run, s) in zip(fig.data, summaries.items()):
        assert list(trace.x) == list(LAYERS) and trace.marker.color == {"a": "#111111", "b": "#222222"}[run]
        np.testing.assert_allclose(trace.y, s["l2_mean"])
        np.testing.assert_allclose(np.asarray(trace.y) + trace.error_y.array, s["l2_hi"])
        np.testing.assert_allclose(np.asarray(trace.y) - trace.error_y.arrayminus, s["l2_lo"])
    with pytest.raises(FeatgapError, match="split by outcome"):
        gap_by_layer_runs({"a": summarize(table, by=("layer", "outcome"), metrics=["l2"])})
    with pytest.raises(FeatgapError, match="at least one"):
        gap_by_layer_runs({})


def test_gap_vs_eps_runs_one_line_and_band_per_run(eps_table):
    from featgap.plots.gap import gap_vs_eps_runs

    pool = eps_table[eps_table["layer"] == "pool"]
    summaries = {"a": summarize(pool, by=("eps", "layer"), metrics=["l2"]),
                 "b": summarize(pool.assign(l2=pool["l2"] + 1), by=("eps", "layer"), metrics=["l2"])}
    fig = gap_vs_eps_runs(summaries)
    assert [t.name for t in fig.data] == ["a 95% CI", "a", "b 95% CI", "b"]
    for (band, line), s in zip([fig.data[0:2], fig.data[2:4]], summaries.values()):
        np.testing.assert_allclose(line.x, [0.0, 0.1, 0.3])
        np.testing.assert_allclose(line.y, s["l2_mean"])
        np.testing.assert_allclose(band.y, np.concatenate([s["l2_lo"], s["l2_hi"][::-1]]))
    assert "pool" in fig.layout.title.text
    with pytest.raises(FeatgapError, match="keep one layer"):
        gap_vs_eps_runs({"a": summarize(eps_table, by=("eps", "layer"), metrics=["l2"])})
