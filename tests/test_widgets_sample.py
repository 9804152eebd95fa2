"""SampleInspector: choosing a sample redraws every panel in place with what the probes give for that
one image (its adversarial example, gap_table rows, probabilities, compare_attributions maps and,
for the AFD student, component_norms and both heads' classes); show(i) is what other views call;
bad input is a one-line message."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featgap import runs
from featgap.errors import FeatgapError
from featgap.methods.afd import load_student
from featgap.probes import adversarial_examples, compare_attributions, component_norms, gap_table
from featgap.widgets.sample_inspector import SampleInspector

STEPS = 3
EPS = 0.3


@pytest.fixture(scope="module")
def batch(widget_runs):
    x, y = widget_runs["data"]
    return x[:16], y[:16]


def _static_data(fig) -> list:
    return json.loads(fig.to_json())["data"]


def assert_shows_sample(view: SampleInspector, model, x, y, i: int, x_adv_i: torch.Tensor | None = None) -> None:
    """Every panel of ``view`` holds what the probes give for sample ``i`` (PGD-STEPS at EPS, seed 0)."""
    xi, yi = x[i:i + 1], y[i:i + 1]
    if x_adv_i is None:
        x_adv_i = adversarial_examples(model, xi, yi, eps=EPS, steps=STEPS)
    data = view.figure_widget.data
    assert view.index.value == i and view.state.index == i
    torch.testing.assert_close(view.state.x_adv, x_adv_i)
    # images: natural, amplified perturbation, adversarial
    np.testing.assert_allclose(data[0].z, xi[0, 0].numpy())
    np.testing.assert_allclose(data[2].z, x_adv_i[0, 0].numpy(), rtol=1e-6)
    # attribution maps of the chosen method
    cmp = compare_attributions(model, xi, yi, x_adv_i, methods=view.method.value)
    np.testing.assert_allclose(data[3].z, cmp.heatmap(view.method.value, "natural")[0].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(data[4].z, cmp.heatmap(view.method.value, "adversarial")[0].numpy(), rtol=1e-5,
                               atol=1e-7)
    # top-k probabilities of both inputs
    with torch.no_grad():
        probs = model(torch.cat([xi, x_adv_i])).softmax(1)
    classes = [int(c) for c in data[5].x]
    np.testing.assert_allclose(data[5].y, probs[0, classes].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(data[6].y, probs[1, classes].numpy(), rtol=1e-5, atol=1e-7)
    assert set(probs[0].topk(view.k).indices.tolist()) <= set(classes)
    # the per-layer gap of this sample
    table = gap_table(model, xi, yi, x_adv_i)
    assert list(data[7].x) == table["layer"].tolist()
    np.testing.assert_allclose(data[7].y, table[view.metric.value], rtol=1e-5)
    assert f"sample {i}," in view.figure_widget.layout.title.text


def test_index_method_and_metric_redraw_in_place_as_the_probes_say(widget_runs, batch):
    x, y = batch
    model = runs.load(widget_runs["pgd_at"])
    view = SampleInspector(widget_runs["pgd_at"], x, y, pgd_steps=STEPS,
                           methods=("saliency", "integrated_gradients"))
    assert len(view.figure_widget.data) == 8  # no component panel for a PGD-AT model
    assert view.index.continuous_update is False
    assert_shows_sample(view, model, x, y, 0)
    uids = [t.uid for t in view.figure_widget.data]

    view.index.value = 3
    assert view.last_error is None and view.index_box.value == 3
    assert_shows_sample(view, model, x, y, 3)

    view.method.value = "integrated_gradients"
    view.metric.value = "rel_l2"
    assert_shows_sample(view, model, x, y, 3)

    view.index_box.value = 5  # the text box moves the slider
    assert_shows_sample(view, model, x, y, 5)
    assert [t.uid for t in view.figure_widget.data] == uids

    static = view.figure()
    assert _static_data(static) == _static_data(view.figure_widget)
    assert static.layout.title.text == view.figure_widget.layout.title.text


def test_show_is_what_other_views_call(widget_runs, batch):
    x, y = batch
    model = runs.load(widget_runs["pgd_at"])
    view = SampleInspector(model, x, y, eps=EPS, pgd_steps=STEPS, index=2)
    assert_shows_sample(view, model, x, y, 2)
    view.show(np.int64(7))
    assert_shows_sample(view, model, x, y, 7)
    cached = view.state
    view.show(2)
    view.show(7)
    assert view.state is cached  # one computation per sample
    view.show(99)
    assert view.last_error is not None and "\n" not in view.last_error and "99" in view.last_error
    assert view.index.value == 7
    view.show(1)
    assert view.last_error is None


def test_given_adversarial_examples_are_inspected(widget_runs, batch):
    x, y = batch
    model = runs.load(widget_runs["pgd_at"])
    x_adv = (x + 0.1 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    view = SampleInspector(model, x, y, x_adv=x_adv, index=4)
    assert_shows_sample(view, model, x, y, 4, x_adv[4:5])
    assert "given x_adv" in view.figure_widget.layout.title.text


def test_afd_student_components_and_heads(widget_runs, batch):
    x, y = batch
    model = runs.load(widget_runs["afd"])
    view = SampleInspector(widget_runs["afd"], x, y, pgd_steps=STEPS, index=1)
    assert view.component_model is not None and len(view.figure_widget.data) == 12
    student = load_student(str(widget_runs["afd"]))

    for i in (1, 6):
        view.index.value = i
        assert_shows_sample(view, model, x, y, i)
        xi, yi, x_adv_i = x[i:i + 1], y[i:i + 1], view.state.x_adv
        direct = component_norms(student, xi, yi, x_adv_i)
        data = view.figure_widget.data
        for trace, kind in ((data[8], "nat"), (data[9], "adv")):
            row = direct[direct["input"] == kind].iloc[0]
            np.testing.assert_allclose(trace.y, [row["f1_norm"], row["f2_norm"]], rtol=1e-5)
        for trace, kind in ((data[10], "nat"), (data[11], "adv")):
            np.testing.assert_allclose(trace.y, direct.loc[direct["input"] == kind, "cos_f1_f2"], rtol=1e-5)
        with torch.no_grad():
            c_nat, c_adv = student.components(xi), student.components(x_adv_i)
        heads = {"nat": (int(c_nat["logits1"].argmax(1)), int(c_nat["logits2"].argmax(1))),
                 "adv": (int(c_adv["logits1"].argmax(1)), int(c_adv["logits2"].argmax(1)))}
        assert view.state.heads == heads
        text = " ".join(a.text or "" for a in view.figure_widget.layout.annotations)
        assert f"adversarial: f1 head → {heads['adv'][0]}, f2 head → {heads['adv'][1]}" in text

    plain = SampleInspector(widget_runs["afd"], x, y, pgd_steps=STEPS, components=False)
    assert plain.component_model is None and len(plain.figure_widget.data) == 8


def test_a_model_without_components_asked_for_them_is_one_line(widget_runs, batch):
    x, y = batch
    for run in (widget_runs["pgd_at"], runs.load(widget_runs["afd"])):  # the exported AFD model has none either
        with pytest.raises(FeatgapError) as err:
            SampleInspector(run, x, y, eps=EPS, components=True)
        assert "\n" not in str(err.value) and "no components()" in str(err.value)


@pytest.mark.parametrize("kwargs,needle", [
    ({"layers": ["pool", "fc9"]}, "fc9"),
    ({"eps": 1.5}, "eps"),
    ({"eps": -0.2}, "eps"),
    ({"index": 16}, "index"),
    ({"index": -1}, "index"),
    ({"methods": ("saliency", "lime")}, "lime"),
    ({"attack": "cw"}, "cw"),
    ({"metric": "l3"}, "l3"),
    ({"k": 0}, "k"),
    ({"x_adv": torch.zeros(3, 1, 28, 28)}, "x_adv"),
])
def test_bad_input_is_one_line_at_construction(widget_runs, batch, kwargs, needle):
    x, y = batch
    with pytest.raises(FeatgapError) as err:
        SampleInspector(widget_runs["pgd_at"], x, y, **kwargs)
    text = str(err.value)
    assert "\n" not in text and needle in text


def test_bad_run_and_missing_eps_are_one_line(widget_runs, batch, tmp_path):
    x, y = batch
    model = runs.load(widget_runs["pgd_at"])
    for call, needle in [(lambda: SampleInspector(tmp_path / "nope", x, y), "does not exist"),
                         (lambda: SampleInspector(model, x, y), "eps")]:
        with pytest.raises(FeatgapError) as err:
            call()
        assert "\n" not in str(err.value) and needle in str(err.value)
