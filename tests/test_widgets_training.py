"""TrainingScrubber: the slider moves the marker and swaps in the kept checkpoints' aligned maps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from featgap import runs
from featgap.errors import FeatgapError
from featgap.plots.training import EPOCH_MARKER
from featgap.probes import adversarial_examples, embed_sequence, extract_features, load_trajectory
from featgap.widgets import TrainingScrubber

STEPS = 3
N = 24


@pytest.fixture(scope="module")
def batch(widget_runs):
    x, y = widget_runs["data"]
    return x[:N], y[:N]


@pytest.fixture(scope="module")
def scrubber(widget_runs, batch):
    return TrainingScrubber(widget_runs["pgd_at"], *batch, steps=STEPS)


def _markers(view):
    return [s.x0 for s in view.figure_widget.layout.shapes if s.name == EPOCH_MARKER]


def _trace(fig, **meta):
    return next(t for t in fig.data if t.meta is not None and all(t.meta.get(k) == v for k, v in meta.items()))


def _kept_maps(run, x, y, epochs, layer="pool"):
    """What the view should show: the kept models' features, mapped in one PCA frame by the probes."""
    eps = runs.read_config(run)["config"]["eps"]
    slices = []
    for epoch in epochs:
        model = runs.load(run, epoch=epoch)
        x_adv = adversarial_examples(model, x, y, eps=eps, steps=STEPS, seed=0)
        slices.append((extract_features(model, x, [layer])[layer], extract_features(model, x_adv, [layer])[layer]))
    return dict(zip(epochs, embed_sequence(slices, method="pca")))


def _map_traces(view, run_index=0):
    return [view.figure_widget.data[i] for i in view.map_traces[run_index]]


def test_the_slider_moves_the_marker_and_the_map(widget_runs, batch, scrubber):
    x, y = batch
    view = scrubber
    assert runs.checkpoint_epochs(widget_runs["pgd_at"]) == [1, 2]
    assert (view.epoch.min, view.epoch.max, view.epoch.value) == (1, 2, 2)
    assert view.epoch.continuous_update is False
    expected = _kept_maps(widget_runs["pgd_at"], x, y, [1, 2])
    traces = list(view.figure_widget.data)
    for epoch in (1, 2):
        view.epoch.value = epoch
        assert _markers(view) == [epoch, epoch]
        pairs, nat, adv = _map_traces(view)
        np.testing.assert_allclose(nat.x, expected[epoch].nat[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(nat.y, expected[epoch].nat[:, 1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(adv.x, expected[epoch].adv[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pairs.y[1::3], expected[epoch].adv[:, 1], rtol=1e-5, atol=1e-6)
        assert view.figure_widget.layout.annotations[2].text == f"pgd_at · epoch {epoch}"
    assert all(a is b for a, b in zip(traces, view.figure_widget.data)), "traces are updated, not replaced"
    assert view.message.value == "" and view.last_error is None


def test_the_curves_are_the_runs_metrics_and_trajectory(widget_runs, scrubber):
    records = runs.read_metrics(widget_runs["pgd_at"])
    fig = scrubber.figure_widget
    assert list(_trace(fig, curve="monitor PGD").y) == pytest.approx([r["monitor_pgd_acc"] for r in records])
    gap = load_trajectory(widget_runs["pgd_at"]).query("layer == 'pool' and metric == 'l2' and outcome == 'all'")
    assert list(_trace(fig, layer="pool", band=False).y) == pytest.approx(gap.sort_values("epoch")["mean"].tolist())
    assert not any(t.meta and t.meta.get("layer") == "stage1" for t in fig.data)


def test_the_maps_keep_one_range_over_all_epochs(scrubber):
    fig = scrubber.figure_widget
    axis = fig.layout[fig.data[scrubber.map_traces[0][1]].xaxis.replace("x", "xaxis")]
    lo, hi = axis.range
    xs = [v for table, _ in scrubber.frames.values() for v in table["dim1"]]
    assert lo < min(xs) and max(xs) < hi and axis.autorange is False


def test_static_figure_equals_the_widget(scrubber):
    static, live = json.loads(scrubber.figure().to_json()), json.loads(scrubber.figure_widget.to_json())
    assert static["data"] == live["data"] and static["layout"]["shapes"] == live["layout"]["shapes"]


def test_a_run_without_kept_checkpoints_still_shows_its_curves(widget_runs, batch):
    view = TrainingScrubber(widget_runs["standard"], *batch, steps=STEPS)
    assert "standard kept no checkpoints" in view.message.value and "--keep-checkpoints" in view.message.value
    assert "\n" not in view.message.value and view.last_error is None
    assert view.map_traces == {} and _trace(view.figure_widget, curve="monitor clean") is not None
    view.epoch.value = 1
    assert _markers(view) == [1, 1]
    assert "--keep-checkpoints" in view.message.value  # the note stays after an update


def test_several_runs_map_only_those_that_kept_checkpoints(widget_runs, batch):
    view = TrainingScrubber([widget_runs["standard"], widget_runs["pgd_at"]], *batch, steps=STEPS)
    assert list(view.map_traces) == [1] and "standard kept no checkpoints" in view.message.value
    assert {t.meta["run"] for t in view.figure_widget.data if t.meta and "curve" in t.meta} == {"standard", "pgd_at"}


def test_between_kept_epochs_the_latest_kept_one_is_shown(widget_runs, batch, tmp_path):
    run = tmp_path / "every2"
    shutil.copytree(widget_runs["pgd_at"], run)
    runs.epoch_checkpoint(run, 1).unlink()  # as if trained with --keep-checkpoints 2
    view = TrainingScrubber(run, *batch, steps=STEPS)
    assert view.kept == {0: [2]}
    view.epoch.value = 1
    assert list(_map_traces(view)[1].x) == []
    assert "no checkpoint kept by epoch 1" in view.figure_widget.layout.annotations[2].text
    view.epoch.value = 2
    assert len(_map_traces(view)[1].x) == N


@pytest.mark.parametrize("make, message", [
    (lambda r, x, y: TrainingScrubber(r["pgd_at"].parent / "nope", x, y), "does not exist"),
    (lambda r, x, y: TrainingScrubber(r["pgd_at"], x, y, layer="conv9"), "unknown layer 'conv9'"),
    (lambda r, x, y: TrainingScrubber(r["pgd_at"], x[:0], y[:0]), "empty selection"),
    (lambda r, x, y: TrainingScrubber([], x, y), "no run given"),
    (lambda r, x, y: TrainingScrubber(r["pgd_at"], x, y, method="tsne"), "no aligned variant"),
    (lambda r, x, y: TrainingScrubber(runs.load(r["pgd_at"]), x, y), "needs run directories"),
    (lambda r, x, y: TrainingScrubber(r["pgd_at"], x, y, metric="l7"), "unknown gap metric"),
])
def test_bad_input_is_a_one_line_error(widget_runs, batch, make, message):
    with pytest.raises(FeatgapError, match=message) as err:
        make(widget_runs, *batch)
    assert "\n" not in str(err.value)
