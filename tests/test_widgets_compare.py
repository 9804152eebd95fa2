"""Tests of featgap.widgets.RunComparer without a browser: drive its controls from Python and compare
the FigureWidget's traces with eval.json and with a direct geometry_table call; bad inputs give
one-line errors; the geometry is computed once per run; ``figure()`` equals the widget."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from featgap import runs
from featgap.errors import FeatgapError
from featgap.probes import geometry_table
from featgap.widgets import run_comparer
from featgap.widgets.run_comparer import RunComparer

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = ("standard", "pgd_at", "afd")


def data_of(fig) -> list:
    """A figure's traces as plain JSON (arrays compared by value)."""
    return json.loads(fig.to_json())["data"]


def plain(text: str) -> str:
    return text.replace("<br>", " ").replace("\u00a0", " ")


def eval_of(widget_runs, name: str) -> dict:
    return json.loads((widget_runs[name] / "eval.json").read_text())


@pytest.fixture(scope="module")
def direct_geometry(widget_runs):
    """geometry_table of each run, called directly (what the bars must show)."""
    x, y = widget_runs["data"]
    return {n: geometry_table(runs.load(widget_runs[n]), x, y, layers=["pool"], eps=0.3) for n in NAMES}


@pytest.fixture(scope="module")
def view(widget_runs):
    x, y = widget_runs["data"]
    return RunComparer([widget_runs[n] for n in NAMES], x, y)


@pytest.fixture
def fresh(view):
    """The module's view, back to all runs and the L2 gap."""
    view.select.value = NAMES
    view.metric.value = "l2"
    return view


def test_traces_show_eval_json_and_geometry_table(widget_runs, direct_geometry, fresh):
    fw = fresh.figure_widget
    table, scatter, *bars = fw.data
    assert table.type == "table" and scatter.type == "scatter" and all(b.type == "bar" for b in bars)
    assert list(table.cells.values[0]) == list(NAMES)
    assert list(scatter.text) == list(NAMES)
    np.testing.assert_allclose(scatter.x, [eval_of(widget_runs, n)["feature_gap"]["l2"] for n in NAMES])
    np.testing.assert_allclose(scatter.y, [eval_of(widget_runs, n)["pgd"] for n in NAMES])  # no AutoAttack
    metrics = [c for c in direct_geometry["standard"].columns if c != "layer"]
    assert [b.name for b in bars] == metrics
    for b in bars:
        np.testing.assert_allclose(b.y, [direct_geometry[n][b.name].iloc[0] for n in NAMES], rtol=1e-6)


def test_metric_dropdown_updates_traces_in_place(widget_runs, fresh):
    fw = fresh.figure_widget
    table, scatter = fw.data[0], fw.data[1]
    before = list(scatter.x)
    fresh.metric.value = "cosine"
    assert fw.data[0] is table and fw.data[1] is scatter  # the same trace objects, new data
    assert list(scatter.x) != before
    np.testing.assert_allclose(scatter.x, [eval_of(widget_runs, n)["feature_gap"]["cosine"] for n in NAMES])
    assert "1 − cos" in plain(table.header.values[7]) and "1 − cos" in fw.layout.xaxis.title.text
    assert fresh.last_error is None


def test_selection_shows_only_the_selected_runs(widget_runs, direct_geometry, fresh):
    fresh.select.value = ("afd", "standard")
    fw = fresh.figure_widget
    assert list(fw.data[0].cells.values[0]) == ["afd", "standard"]
    assert list(fw.data[1].text) == ["afd", "standard"]
    np.testing.assert_allclose(fw.data[1].x, [eval_of(widget_runs, n)["feature_gap"]["l2"] for n in ("afd", "standard")])
    for b in fw.data[2:]:
        assert list(b.x) == ["afd", "standard"]
        np.testing.assert_allclose(b.y, [direct_geometry[n][b.name].iloc[0] for n in ("afd", "standard")], rtol=1e-6)
    # colours follow the run, not its position
    colors = {r: c for r, c in zip(fw.data[1].text, fw.data[1].marker.color)}
    assert colors == {n: fresh.colors[n] for n in ("afd", "standard")}


def test_empty_selection_is_a_message_and_keeps_the_figure(fresh):
    before = data_of(fresh.figure_widget)
    fresh.select.value = ()
    assert fresh.last_error == "select at least one run to compare"
    assert "select at least one run" in fresh.message.value
    assert data_of(fresh.figure_widget) == before
    fresh.select.value = ("pgd_at",)
    assert fresh.last_error is None and fresh.message.value == ""


def test_geometry_is_computed_once_per_run(widget_runs, monkeypatch):
    x, y = widget_runs["data"]
    calls = []
    real = run_comparer.geometry_table

    def counting(model, *args, **kwargs):
        calls.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(run_comparer, "geometry_table", counting)
    view = RunComparer([widget_runs["standard"], widget_runs["pgd_at"]], x[:20], y[:20], eps=0.2)
    assert len(calls) == 2
    view.select.value = ("pgd_at",)
    view.metric.value = "linf"
    view.select.value = ("standard", "pgd_at")
    assert len(calls) == 2  # from the cache
    assert view.output.outputs == ()  # the progress area is cleared after the work


def test_figure_equals_the_widget(fresh):
    fresh.select.value = ("standard", "afd")
    static = fresh.figure()
    assert data_of(static) == data_of(fresh.figure_widget)
    assert static.layout.title.text == fresh.figure_widget.layout.title.text


def test_without_images_there_are_no_alignment_panels(widget_runs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(widget_runs["standard"] / "config.json", bare / "config.json")
    view = RunComparer([widget_runs["pgd_at"], bare])
    assert [t.type for t in view.figure_widget.data] == ["table", "scatter"]
    assert "no evaluation" in plain(view.figure_widget.data[0].cells.values[-1][1])


def test_bad_inputs_are_one_line_errors(widget_runs, tmp_path):
    x, y = widget_runs["data"]
    with pytest.raises(FeatgapError, match=r"run .*nope does not exist"):
        RunComparer([widget_runs["standard"], tmp_path / "nope"])
    with pytest.raises(FeatgapError, match="at least one run"):
        RunComparer([])
    with pytest.raises(FeatgapError, match="both x and y"):
        RunComparer([widget_runs["standard"]], x)
    with pytest.raises(FeatgapError, match="no_such_layer"):
        RunComparer([widget_runs["standard"]], x, y, layer="no_such_layer")
