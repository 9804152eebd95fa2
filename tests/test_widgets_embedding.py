"""EmbeddingExplorer: driven from Python, its traces equal embed()/embed_sequence() of the probes' features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from plotly.callbacks import Points

from featgap import runs
from featgap.errors import FeatgapError
from featgap.probes import adversarial_examples, embed, embed_sequence, extract_features, gap_table
from featgap.widgets import EmbeddingExplorer
from featgap.widgets.embedding_explorer import image_rgb

STEPS = 3
N = 24


@pytest.fixture(scope="module")
def batch(widget_runs):
    x, y = widget_runs["data"]
    return x[:N], y[:N]


@pytest.fixture(scope="module")
def one_run(widget_runs, batch):
    return EmbeddingExplorer(widget_runs["pgd_at"], *batch, steps=STEPS)


def _probe_features(run, x, y, layer, eps=None):
    model = runs.load(run)
    eps = runs.read_config(run)["config"]["eps"] if eps is None else eps
    x_adv = adversarial_examples(model, x, y, eps=eps, steps=STEPS, seed=0)
    f = extract_features(model, x, [layer])[layer]
    f_adv = extract_features(model, x_adv, [layer])[layer]
    return f, f_adv, gap_table(model, x, y, x_adv, layers=[layer]), x_adv


def _assert_map(fig, first, emb):
    nat, adv = fig.data[first + 1], fig.data[first + 2]
    np.testing.assert_allclose(nat.x, emb.nat[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nat.y, emb.nat[:, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv.x, emb.adv[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv.y, emb.adv[:, 1], rtol=1e-5, atol=1e-6)
    pairs = fig.data[first]
    np.testing.assert_allclose(pairs.x[1::3], emb.adv[:, 0], rtol=1e-5, atol=1e-6)


def test_one_run_draws_embed_of_the_probes_features(widget_runs, batch, one_run):
    x, y = batch
    f, f_adv, table, _ = _probe_features(widget_runs["pgd_at"], x, y, "pool")
    view = one_run
    _assert_map(view.figure_widget, 0, embed(f, f_adv, method="pca"))
    nat = view.figure_widget.data[1]
    assert list(nat.customdata) == list(range(N))
    assert nat.marker.symbol == "circle" and view.figure_widget.data[2].marker.symbol == "x"
    pred = table.set_index("sample")
    assert f"adversarial → {int(pred.at[5, 'adv_pred'])}" in nat.text[5]
    assert view.last_error is None


def test_moving_the_controls_updates_the_traces_in_place(widget_runs, batch, one_run):
    x, y = batch
    view = one_run
    traces = list(view.figure_widget.data)
    view.layer.value = "stage2"
    f, f_adv, _, _ = _probe_features(widget_runs["pgd_at"], x, y, "stage2")
    _assert_map(view.figure_widget, 0, embed(f, f_adv, method="pca"))
    view.method.value = "tsne"
    _assert_map(view.figure_widget, 0, embed(f, f_adv, method="tsne"))
    assert all(a is b for a, b in zip(traces, view.figure_widget.data)), "traces are updated, not replaced"
    assert "TSNE of 'stage2'" in view.figure_widget.layout.title.text
    view.method.value, view.layer.value = "pca", "pool"


def test_static_figure_equals_the_widget(one_run):
    fig = one_run.figure()
    assert json.loads(fig.to_json())["data"] == json.loads(one_run.figure_widget.to_json())["data"]


def test_two_runs_share_one_frame(widget_runs, batch):
    x, y = batch
    view = EmbeddingExplorer([widget_runs["standard"], widget_runs["pgd_at"]], x, y, steps=STEPS)
    a = _probe_features(widget_runs["standard"], x, y, "pool")
    b = _probe_features(widget_runs["pgd_at"], x, y, "pool")
    before, after = embed_sequence([(a[0], a[1]), (b[0], b[1])], method="pca")
    _assert_map(view.figure_widget, 0, before)
    _assert_map(view.figure_widget, 3, after)
    assert view.figure_widget.layout.xaxis2.matches == "x"
    assert list(view.method.options) == ["pca", "umap"]
    assert [t.text for t in view.figure_widget.layout.annotations] == ["standard", "pgd_at"]


class RecordingInspector:
    def __init__(self):
        self.shown = []

    def show(self, index):
        self.shown.append(index)


def _points(index, trace_index):
    return Points(point_inds=[index], xs=[0.0], ys=[0.0], trace_name="", trace_index=trace_index)


def test_clicking_a_point_opens_it_in_the_inspector(widget_runs, batch):
    inspector = RecordingInspector()
    view = EmbeddingExplorer(widget_runs["pgd_at"], *batch, steps=STEPS, inspector=inspector)
    adv_trace = view.figure_widget.data[2]
    view.on_click(adv_trace, _points(7, 2))
    assert inspector.shown == [adv_trace.customdata[7]] == [7]
    view.on_click(adv_trace, Points(point_inds=[], xs=[], ys=[], trace_name="", trace_index=2))  # a click on nothing
    assert inspector.shown == [7]


def test_without_an_inspector_the_click_shows_the_sample_in_the_panel(widget_runs, batch, one_run):
    x, y = batch
    view = one_run
    _, _, table, x_adv = _probe_features(widget_runs["pgd_at"], x, y, "pool")
    view.on_click(view.figure_widget.data[1], _points(4, 1))
    row = table.set_index("sample").loc[4]
    assert view.selected == 4
    assert f"sample 4</b> · class {int(y[4])}" in view.panel_text.value
    assert f"natural → {int(row['nat_pred'])}, adversarial → {int(row['adv_pred'])}" in view.panel_text.value
    assert np.array_equal(view.panel_images.data[0].z, image_rgb(x[4]))
    assert np.array_equal(view.panel_images.data[1].z, image_rgb(x_adv[4]))
    view.on_hover(view.figure_widget.data[1], _points(9, 1))
    assert "sample 9</b>" in view.panel_text.value and view.selected == 4


def test_image_rgb_is_the_image_in_bytes():
    img = torch.tensor([[[0.0, 1.0], [0.5, 0.25]]])
    rgb = image_rgb(img)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[:, :, 0].tolist() == [[0, 255], [128, 64]] and (rgb[:, :, 0] == rgb[:, :, 2]).all()


@pytest.mark.parametrize("make, message", [
    (lambda r, x, y: EmbeddingExplorer(r["pgd_at"].parent / "nope", x, y), "does not exist"),
    (lambda r, x, y: EmbeddingExplorer(r["pgd_at"], x, y, layer="conv9"), "unknown layer 'conv9'"),
    (lambda r, x, y: EmbeddingExplorer(r["pgd_at"], x[:0], y[:0]), "empty selection"),
    (lambda r, x, y: EmbeddingExplorer([], x, y), "no run given"),
    (lambda r, x, y: EmbeddingExplorer([r["pgd_at"]] * 3, x, y), "at most 2 runs"),
    (lambda r, x, y: EmbeddingExplorer([r["standard"], r["pgd_at"]], x, y, method="tsne"), "no aligned variant"),
    (lambda r, x, y: EmbeddingExplorer(r["pgd_at"], x, y, method="mds"), "unknown map method"),
    (lambda r, x, y: EmbeddingExplorer(r["pgd_at"], x, y[:3]), "24 images but y has 3 labels"),
    (lambda r, x, y: EmbeddingExplorer(runs.load(r["pgd_at"]), x, y), "give eps="),
    (lambda r, x, y: EmbeddingExplorer(r["pgd_at"], x, y, inspector=object()), "show\\(index\\)"),
])
def test_bad_input_is_a_one_line_error(widget_runs, batch, make, message):
    with pytest.raises(FeatgapError, match=message) as err:
        make(widget_runs, *batch)
    assert "\n" not in str(err.value)
