"""GapExplorer: driving its controls from Python redraws the traces in place with exactly what the
probes give for the same inputs (gap_table on the same adversarial examples, summarize's
intervals); one attack per (ε, attack); bad input is a one-line message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featgap import runs
from featgap.attacks import fgsm, margin, pgd
from featgap.errors import FeatgapError
from featgap.probes import OUTCOMES, adversarial_examples, gap_table, summarize
from featgap.widgets import gap_explorer
from featgap.widgets.gap_explorer import GapExplorer

STEPS = 3


@pytest.fixture(scope="module")
def batch(widget_runs):
    x, y = widget_runs["data"]
    return x[:24], y[:24]


@pytest.fixture(scope="module")
def model(widget_runs):
    return runs.load(widget_runs["pgd_at"])


def _static_data(fig) -> list:
    return json.loads(fig.to_json())["data"]


def assert_shows(view: GapExplorer, table, layer: str, metric: str) -> None:
    """The view's bars are summarize(table) for ``metric``, its distribution the table's rows of ``layer``."""
    s = summarize(table, n_boot=view.n_boot)
    bar = view.figure_widget.data[0]
    assert list(bar.x) == list(s["layer"])
    np.testing.assert_allclose(bar.y, s[f"{metric}_mean"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bar.y) + np.asarray(bar.error_y.array), s[f"{metric}_hi"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bar.y) - np.asarray(bar.error_y.arrayminus), s[f"{metric}_lo"], rtol=1e-6)
    rows = table[table["layer"] == layer]
    for trace, outcome in zip(view.figure_widget.data[1:], OUTCOMES):
        np.testing.assert_allclose(np.asarray(trace.y, dtype=float),
                                   rows.loc[rows["outcome"] == outcome, metric].to_numpy(dtype=float), rtol=1e-6)


def test_starts_at_the_runs_training_eps_with_pgd(widget_runs, batch, model):
    x, y = batch
    view = GapExplorer(widget_runs["pgd_at"], x, y, pgd_steps=STEPS)
    eps = runs.read_config(widget_runs["pgd_at"])["config"]["eps"]
    assert view.eps.value == pytest.approx(eps) and view.eps.continuous_update is False
    assert view.attack.value == "pgd" and view.layer.value == "pool" and view.metric.value == "l2"
    assert [t.type for t in view.figure_widget.data] == ["bar", "box", "box", "box"]
    direct = gap_table(model, x, y, eps=eps, steps=STEPS)  # the probe's own seeded PGD
    assert_shows(view, direct, "pool", "l2")
    assert "PGD-3" in view.figure_widget.layout.title.text


def test_controls_redraw_in_place_as_the_probes_say(widget_runs, batch, model, monkeypatch):
    x, y = batch
    calls = []
    real = gap_explorer.adversarial_examples
    monkeypatch.setattr(gap_explorer, "adversarial_examples", lambda *a, **k: calls.append(1) or real(*a, **k))
    view = GapExplorer(widget_runs["pgd_at"], x, y, pgd_steps=STEPS)
    uids = [t.uid for t in view.figure_widget.data]
    traces = list(view.figure_widget.data)
    before = np.asarray(view.figure_widget.data[0].y).copy()

    view.eps.value = 0.2
    assert view.last_error is None
    assert_shows(view, gap_table(model, x, y, eps=0.2, steps=STEPS), "pool", "l2")
    assert not np.allclose(view.figure_widget.data[0].y, before)
    assert "0.200" in view.figure_widget.layout.title.text

    view.attack.value = "fgsm"
    assert_shows(view, gap_table(model, x, y, fgsm(model, x, y, eps=0.2)), "pool", "l2")

    view.attack.value = "margin"
    x_adv = adversarial_examples(model, x, y, attack=lambda m, a, b: pgd(m, a, b, eps=0.2, steps=STEPS,
                                                                       objective=margin))
    margin_table = gap_table(model, x, y, x_adv)
    assert_shows(view, margin_table, "pool", "l2")
    attacks = len(calls)
    assert attacks == 4  # start, ε = 0.2 PGD, FGSM, margin

    # layer and measure need no new attack: the gap_table holds every layer and measure
    view.layer.value = "stage1"
    assert_shows(view, margin_table, "stage1", "l2")
    assert "stage1" in view.figure_widget.layout.annotations[1].text
    view.metric.value = "linf"
    assert_shows(view, margin_table, "stage1", "linf")
    assert len(calls) == attacks

    # a setting seen before comes from memory
    view.attack.value = "pgd"
    view.eps.value = view.eps.max / 2  # 0.3, the start
    assert len(calls) == attacks
    assert_shows(view, gap_table(model, x, y, eps=view.eps.value, steps=STEPS), "stage1", "linf")

    # updated in place: the same trace objects, never removed and re-added
    assert list(view.figure_widget.data) == traces and [t.uid for t in view.figure_widget.data] == uids


def test_static_figure_equals_the_widget(widget_runs, batch):
    x, y = batch
    view = GapExplorer(widget_runs["afd"], x, y, pgd_steps=STEPS, attacks=("fgsm", "pgd"), eps=0.1)
    view.attack.value = "fgsm"
    static = view.figure()
    assert type(static).__name__ == "Figure"
    assert _static_data(static) == _static_data(view.figure_widget)
    assert static.layout.title.text == view.figure_widget.layout.title.text


def test_a_loaded_model_and_chosen_layers(batch, model):
    x, y = batch
    view = GapExplorer(model, x, y, eps=0.1, layers=["stage2", "pool"], attack="fgsm", layer="stage2")
    assert list(view.layer.options) == ["stage2", "pool"]
    assert_shows(view, gap_table(model, x, y, fgsm(model, x, y, eps=0.1), layers=["stage2", "pool"]), "stage2", "l2")


def test_an_error_while_interacting_goes_to_the_message_line(widget_runs, batch, monkeypatch):
    x, y = batch
    view = GapExplorer(widget_runs["pgd_at"], x, y, pgd_steps=STEPS)
    before = _static_data(view.figure_widget)

    def broken(*args, **kwargs):
        raise FeatgapError("the probe says no")

    monkeypatch.setattr(gap_explorer, "gap_table", broken)
    view.eps.value = 0.05
    assert view.last_error == "the probe says no" and "the probe says no" in view.message.value
    assert _static_data(view.figure_widget) == before  # the last good state stays
    monkeypatch.undo()
    view.eps.value = 0.1
    assert view.last_error is None and view.message.value == ""


@pytest.mark.parametrize("kwargs,needle", [
    ({"layers": ["stage1", "fc9"]}, "fc9"),
    ({"eps": 1.5}, "eps"),
    ({"eps": -0.1}, "eps"),
    ({"eps_max": 2.0}, "eps_max"),
    ({"eps": 0.5, "eps_max": 0.2}, "eps_max"),
    ({"attacks": ("pgd", "cw")}, "cw"),
    ({"attack": "margin", "attacks": ("pgd",)}, "margin"),
    ({"metric": "l3"}, "l3"),
    ({"layer": "stage9"}, "stage9"),
    ({"pgd_steps": 0}, "pgd_steps"),
])
def test_bad_input_is_one_line_at_construction(widget_runs, batch, kwargs, needle):
    x, y = batch
    with pytest.raises(FeatgapError) as err:
        GapExplorer(widget_runs["pgd_at"], x, y, **kwargs)
    text = str(err.value)
    assert "\n" not in text and needle in text


def test_bad_run_data_and_missing_eps_are_one_line(widget_runs, batch, model, tmp_path):
    x, y = batch
    for call, needle in [(lambda: GapExplorer(tmp_path / "nope", x, y), "does not exist"),
                         (lambda: GapExplorer(tmp_path, x, y), "not a featgap run"),
                         (lambda: GapExplorer(model, x, y), "eps"),
                         (lambda: GapExplorer(model, x, y[:3], eps=0.1), "label"),
                         (lambda: GapExplorer(model, x[:0], y[:0], eps=0.1), "empty")]:
        with pytest.raises(FeatgapError) as err:
            call()
        assert "\n" not in str(err.value) and needle in str(err.value)
