"""The views as a reader sees them: a notebook run in a real JupyterLab, rendered by headless Chromium.

Python-side tests (tests/test_widgets_*.py) cannot see whether a widget *renders*: whether the
front end finds the widget and FigureWidget model classes, whether plotly draws, whether a
slider moved in the page reaches the kernel and the figure's data changes on the page. This
test runs a notebook with the views through ``tests/jupyter_browser.py`` and checks exactly
that: every view draws a plotly figure, no cell raises, the page shows no "Error displaying
widget", the browser console has no errors, and moving a slider with the keyboard (or picking
runs in a list) changes the plotted data. Screenshots of each view's output land in ``tmp_path``.

It needs ``/usr/bin/chromium`` and the ``playwright`` package (``.ci/run`` installs the first,
the ``test`` extra the second); without them it is skipped, saying which is missing. A browser
is never downloaded (no ``playwright install``).
"""

from __future__ import annotations

import time

import pytest

from jupyter_browser import NotebookPage, chromium, jupyter_lab, setup_cell, unavailable, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]

PLAIN_SLIDER = """
    import numpy as np
    import ipywidgets as widgets
    import plotly.graph_objects as go
    fw = go.FigureWidget(go.Scatter(x=np.arange(10), y=0.1 * np.arange(10)))
    eps = widgets.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.05, description="ε", continuous_update=False)
    def redraw(change):
        with fw.batch_update():
            fw.data[0].y = change["new"] * np.arange(10)
    eps.observe(redraw, "value")
    widgets.VBox([eps, fw])
"""

# One line per view: (name, cell source, interaction). Interactions: "slider" presses → on the first
# slider's handle and expects the first plot's data to change; "select" picks one run in the
# multi-select and expects the same. A new view is one more line here.
VIEWS = [
    ("plain slider + FigureWidget", PLAIN_SLIDER, "slider"),
    ("RunComparer", "from featgap.widgets import RunComparer\nview = RunComparer(list(RUNS.values()), x, y)\nview",
     "select"),
    ("GapExplorer", "from featgap.widgets.gap_explorer import GapExplorer\nview = GapExplorer(RUNS['pgd_at'], x, y)\nview",
     "slider"),
]


def test_views_render_and_respond_in_jupyterlab(widget_runs, tmp_path):
    runs = {k: v for k, v in widget_runs.items() if k != "data"}
    write_notebook(tmp_path / "views.ipynb", [setup_cell(runs)] + [src for _, src, _ in VIEWS])
    start = time.monotonic()
    with jupyter_lab(tmp_path) as lab, chromium() as browser:
        nb = NotebookPage.open(browser, lab, "views.ipynb", viewport=(1400, 2400))
        try:
            check(nb, tmp_path)
        except BaseException:
            nb.page.screenshot(path=str(tmp_path / "failure.png"))
            raise
    print(f"whole browser check {time.monotonic() - start:.0f} s; screenshots in {tmp_path}")


def check(nb: NotebookPage, tmp_path) -> None:
    """Run all cells; each view draws, raises nothing, and its plot changes when its control moves."""
    ran = nb.run_all(timeout=300)
    assert nb.errors_in_outputs() == {}, nb.errors_in_outputs()
    for i, (name, _, action) in enumerate(VIEWS, start=1):
        nb.wait_for_plots(i, timeout=90)
        nb.screenshot_output(i, tmp_path / f"view{i}.png")
        before = nb.plot_data(i)
        if action == "slider":
            nb.press_slider(i, "ArrowRight", times=2)
        else:  # pick the first run only in the multi-select
            select = nb.cell(i).locator(".widget-select-multiple select")
            select.select_option(index=[0])
        after = nb.wait_for_change(i, before, timeout=60)
        assert after != before, name
        nb.screenshot_output(i, tmp_path / f"view{i}-after.png")
    assert nb.widget_problems() == []
    assert nb.errors_in_outputs() == {}
    assert nb.console_errors == [], nb.console_errors
    print(f"notebook ran in {ran:.0f} s")
