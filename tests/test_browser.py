"""Tutorial 1 as a reader sees it: run in a real JupyterLab, rendered by headless Chromium.

Python-side tests (tests/test_widgets_*.py) cannot see whether a widget *renders*: whether the
front end finds the ipywidgets and FigureWidget model classes, whether plotly draws, whether a
slider moved in the page reaches the kernel and the figure's data changes on the page. This
test copies ``notebooks/01_feature_gap_first_look.ipynb`` (built on the five views) into
``tmp_path`` — so its runs are trained there — opens it in JupyterLab through
``tests/jupyter_browser.py``, runs all cells and checks:

* no cell raises; every view's cell draws its plotly figure(s) and shows its ipywidgets controls;
* the page shows no "Error displaying widget" / "Failed to load model class", and the browser
  console logs no error;
* pressing → on the GapExplorer's ε slider changes that figure's data in the page, and so do
  pressing ← on the TrainingScrubber's epoch slider and picking one run in the RunComparer;
* screenshots of every view (before and after) are written to ``tmp_path``;
* the JupyterLab server is stopped by its PID (the process is gone afterwards).

It needs ``/usr/bin/chromium`` and the ``playwright`` package (``.ci/run`` installs the first,
the ``test`` extra the second); without them it is skipped, saying which is missing. A browser
is never downloaded (no ``playwright install``). About 1.5–2 minutes on 2 cores, most of it the
notebook training its two runs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from jupyter_browser import NotebookPage, chromium, jupyter_lab, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]

TUTORIAL = Path(__file__).resolve().parent.parent / "notebooks" / "01_feature_gap_first_look.ipynb"

# view → (the ipywidgets controls it must show, as CSS classes; the interaction tested, if any).
# "slider:KEY" presses KEY on the view's first slider, "select" picks the first run in its
# multi-select; either must change the data of the view's first plot in the page.
VIEWS = {
    "GapExplorer": ((".widget-slider", ".widget-dropdown"), "slider:ArrowRight"),
    "SampleInspector": ((".widget-slider", ".widget-dropdown"), None),
    "TrainingScrubber": ((".widget-slider",), "slider:ArrowLeft"),
    "EmbeddingExplorer": ((".widget-dropdown",), None),
    "RunComparer": ((".widget-select-multiple", ".widget-dropdown"), "select"),
}


def view_cells(notebook: Path) -> dict[str, int]:
    """view name → the index (among all cells, as the page counts them) of the cell constructing it."""
    cells = json.loads(notebook.read_text())["cells"]
    found = {}
    for name in VIEWS:
        hits = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and f"{name}(" in "".join(c["source"])]
        assert len(hits) == 1, f"tutorial 1 should construct {name} in exactly one cell, found {hits}"
        found[name] = hits[0]
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_tutorial_1_renders_and_responds_in_jupyterlab(tmp_path):
    notebook = tmp_path / TUTORIAL.name
    shutil.copy(TUTORIAL, notebook)
    cells = view_cells(notebook)
    start = time.monotonic()
    with jupyter_lab(tmp_path) as lab, chromium() as browser:
        pid = lab.pid
        nb = NotebookPage.open(browser, lab, notebook.name, viewport=(1400, 2400))
        try:
            check(nb, cells, tmp_path)
        except BaseException:
            nb.page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
    assert not pid_alive(pid), f"the JupyterLab server (PID {pid}) is still running"
    pgd_at = tmp_path / "runs" / "notebook01" / "pgd_at"
    assert list(pgd_at.glob("eval-n*.json")), f"the runs and their evaluations belong in tmp_path: {sorted(pgd_at.glob('*'))}"
    print(f"whole browser check {time.monotonic() - start:.0f} s; screenshots in {tmp_path}")


def check(nb: NotebookPage, cells: dict[str, int], tmp_path: Path) -> None:
    ran = nb.run_all(timeout=400)
    assert nb.errors_in_outputs() == {}, nb.errors_in_outputs()
    for name, i in cells.items():
        nb.wait_for_plots(i, timeout=90)
        controls, _ = VIEWS[name]
        for css in controls:
            assert nb.output(i).locator(css).count() > 0, f"{name}: no {css} control in the page"
        nb.screenshot_output(i, tmp_path / f"{name}.png")
    for name, i in cells.items():
        action = VIEWS[name][1]
        if action is None:
            continue
        before = nb.plot_data(i)
        if action.startswith("slider:"):
            nb.press_slider(i, action.split(":", 1)[1])
        else:  # the first run only
            nb.cell(i).locator(".widget-select-multiple select").select_option(index=[0])
        after = nb.wait_for_change(i, before, timeout=60)
        assert after != before, name
        nb.screenshot_output(i, tmp_path / f"{name}-after.png")
    assert nb.widget_problems() == []
    assert nb.errors_in_outputs() == {}
    assert nb.console_errors == [], nb.console_errors
    print(f"notebook ran in {ran:.0f} s")
