"""featgap.plots.training: curves equal metrics.jsonl, the gap equals load_trajectory, the marker moves."""

from __future__ import annotations

import json
import shutil

import numpy as np
import plotly.graph_objects as go
import pytest

from featgap import runs
from featgap.errors import FeatgapError
from featgap.plots.training import (EPOCH_MARKER, accuracy_table, gap_over_training, set_epoch_marker,
                                    training_curves)
from featgap.probes import load_trajectory


def _trace(fig, **meta):
    found = [t for t in fig.data if t.meta is not None and all(t.meta.get(k) == v for k, v in meta.items())]
    assert len(found) == 1, (meta, [t.meta for t in fig.data])
    return found[0]


def test_accuracy_curves_are_the_runs_metrics(widget_runs):
    fig = training_curves([widget_runs["standard"], widget_runs["pgd_at"]])
    assert isinstance(fig, go.Figure)
    for name in ("standard", "pgd_at"):
        records = runs.read_metrics(widget_runs[name])
        pgd = _trace(fig, run=name, curve="monitor PGD")
        assert list(pgd.x) == [r["epoch"] for r in records]
        assert list(pgd.y) == pytest.approx([r["monitor_pgd_acc"] for r in records])
        clean = _trace(fig, run=name, curve="monitor clean")
        assert list(clean.y) == pytest.approx([r["monitor_clean_acc"] for r in records])
    # training accuracy is stored as a fraction and drawn in percent
    train = _trace(fig, run="standard", curve="train")
    assert list(train.y) == pytest.approx([100 * r["train_acc"] for r in runs.read_metrics(widget_runs["standard"])])
    adv = _trace(fig, run="pgd_at", curve="train (adversarial)")
    assert list(adv.y) == pytest.approx([100 * r["train_adv_acc"] for r in runs.read_metrics(widget_runs["pgd_at"])])


def test_gap_lines_and_bands_are_load_trajectorys(widget_runs):
    run = widget_runs["pgd_at"]
    fig = training_curves(run, metric="linf", layers=["stage2", "pool"])
    expected = load_trajectory(run)
    for layer in ("stage2", "pool"):
        rows = expected.query("metric == 'linf' and outcome == 'all' and layer == @layer").sort_values("epoch")
        line = _trace(fig, layer=layer, band=False)
        assert list(line.x) == rows["epoch"].tolist()
        assert list(line.y) == pytest.approx(rows["mean"].tolist())
        band = _trace(fig, layer=layer, band=True)
        assert list(band.y) == pytest.approx(rows["hi"].tolist() + rows["lo"].tolist()[::-1])
        assert band.fill == "toself"
    assert not any(t.meta and t.meta.get("layer") == "stage1" for t in fig.data)


def test_the_epoch_marker_is_drawn_and_moved(widget_runs):
    fig = training_curves(widget_runs["pgd_at"], epoch=1)
    marks = [s for s in fig.layout.shapes if s.name == EPOCH_MARKER]
    assert len(marks) == 2 and all(s.x0 == s.x1 == 1 for s in marks)
    set_epoch_marker(fig, 2)
    assert all(s.x0 == s.x1 == 2 for s in fig.layout.shapes if s.name == EPOCH_MARKER)
    assert not training_curves(widget_runs["pgd_at"]).layout.shapes


def test_a_run_without_a_trajectory_shows_the_monitors_gap(widget_runs, tmp_path):
    run = tmp_path / "no_probe"
    run.mkdir()
    shutil.copy(widget_runs["standard"] / runs.CONFIG, run / runs.CONFIG)
    records = [{k: v for k, v in r.items() if k != "probe"} for r in runs.read_metrics(widget_runs["standard"])]
    (run / runs.METRICS).write_text("".join(json.dumps(r) + "\n" for r in records))
    gap = gap_over_training(run)
    assert gap["source"].unique().tolist() == ["monitor"] and gap["layer"].unique().tolist() == ["pool"]
    assert gap["mean"].tolist() == pytest.approx([r["gap_l2"] for r in records])
    assert np.isnan(gap["lo"]).all()
    fig = training_curves(run)
    line = _trace(fig, layer="pool", band=False)
    assert "monitor, no CI" in line.name
    assert not any(t.meta and t.meta.get("band") for t in fig.data)


def test_accuracy_table_is_tidy(widget_runs):
    table = accuracy_table([widget_runs["standard"], widget_runs["afd"]], names=["a", "b"])
    assert list(table.columns) == ["run", "epoch", "curve", "accuracy"]
    assert set(table["run"]) == {"a", "b"}
    assert len(table[table["run"] == "b"]) == 3  # one epoch: train (adversarial), monitor clean, monitor PGD


@pytest.mark.parametrize("call, message", [
    (lambda r: training_curves(r["standard"].parent / "nope"), "does not exist"),
    (lambda r: training_curves([]), "at least one run"),
    (lambda r: training_curves(r["standard"], metric="l7"), "unknown gap metric"),
    (lambda r: training_curves(r["standard"], layers="conv9"), "no gap trajectory at layer 'conv9'"),
    (lambda r: training_curves(r["standard"], names=["a", "b"]), "2 names for 1 runs"),
])
def test_bad_input_is_a_one_line_error(widget_runs, call, message):
    with pytest.raises(FeatgapError, match=message) as err:
        call(widget_runs)
    assert "\n" not in str(err.value)
