"""See the widgets the way a reader does: JupyterLab driven by headless Chromium.

Plain pytest drives a view's controls from Python; only a browser shows whether the widget
actually *renders* (the front-end model classes load, plotly draws, a slider moved with the
keyboard reaches the kernel and the figure's data changes on the page). This module does that
with a real JupyterLab server and the system Chromium, driven by the ``playwright`` package:

* :func:`jupyter_lab` starts JupyterLab on 127.0.0.1 (a free port, a random token, temporary
  config / runtime / data / settings directories, the news popup off, cells never virtualised)
  and stops it by its own PID;
* :func:`chromium` opens ``/usr/bin/chromium`` headless (a browser is never downloaded);
* :class:`NotebookPage` opens a notebook, runs all cells, waits for them, collects console
  errors and widget errors, reads a plot's data, moves a slider, screenshots a cell's output.

Used by ``tests/test_browser.py`` and, as a script, by ``make screenshots``::

    python tests/jupyter_browser.py --out docs/images            # one PNG per existing view
    python tests/jupyter_browser.py --out /tmp/shots --runs runs/demo
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WIDGET_ERRORS = ("Error displaying widget", "Failed to load model class")
"""Text the widget manager puts on the page when a widget cannot render."""
USER_SETTINGS = {
    # no "Would you like to receive official Jupyter news?" toast over the notebook
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
    # render every cell (JupyterLab 4 otherwise skips off-screen cells, and their outputs)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def unavailable() -> str | None:
    """Why the browser checks cannot run here (``None`` when they can)."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (CI installs it: apt-get install chromium)"
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    try:
        importlib.import_module("jupyterlab")
    except ImportError:
        return "jupyterlab is missing"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the server
@dataclass
class JupyterLab:
    """A running JupyterLab server: its base URL, token, notebook root and log file."""

    base: str
    token: str
    root: Path
    log: Path
    pid: int

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}"


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate the server (our own PID only), wait, kill it if it does not exit."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@contextmanager
def jupyter_lab(root: Path, *, python: str = sys.executable, timeout: float = 120) -> Iterator[JupyterLab]:
    """Start JupyterLab serving ``root`` on 127.0.0.1; stop it (by its PID) on exit, whatever happens.

    Configuration, runtime, data, settings and workspace directories are fresh temporary ones,
    so nothing of the user's Jupyter setup (or a previous run) leaks in; the kernel is the
    ``python`` running the server. The server's output goes to ``root/jupyter-server.log``.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="featgap-jl-"))
    settings = state / "settings"
    for name, values in USER_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"),
               JUPYTER_DATA_DIR=str(state / "data"), JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
               PATH=f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    port, token = free_port(), secrets.token_hex(16)
    log = root / "jupyter-server.log"
    cmd = [python, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}; its log:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer in {timeout:.0f} s; its log:\n"
                                       f"{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield JupyterLab(base=base, token=token, root=root, log=log, pid=proc.pid)
    finally:
        _stop(proc)
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------- notebooks
def write_notebook(path: Path, cells: Sequence[str]) -> Path:
    """An nbformat-4 notebook of code cells (python3 kernel), unexecuted."""
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"cell-{i}", "metadata": {}, "outputs": [],
                     "source": textwrap.dedent(src).strip("\n")} for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = Path(path)
    path.write_text(json.dumps(nb, indent=1))
    return path


# ---------------------------------------------------------------- the browser
@contextmanager
def chromium(headless: bool = True):  # noqa: ANN201 - a playwright Browser
    """The system Chromium, driven by playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=headless)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class NotebookPage:
    """One notebook open in JupyterLab, in a Chromium page; cells are addressed by index (0-based)."""

    page: object
    lab: JupyterLab
    console_errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser, lab: JupyterLab, notebook: str, *, viewport=(1400, 1000), timeout: float = 90) -> NotebookPage:
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self = cls(page, lab)
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))
        page.goto(lab.url(notebook))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
        self._accept_kernel_dialog(10)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout * 1000)
        self._collapse_left_sidebar()
        return self

    def _collapse_left_sidebar(self) -> None:
        """Give the notebook the page's full width (clicking the open side-bar tab closes the panel)."""
        tab = self.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if tab.count():
            tab.first.click()

    def _accept_kernel_dialog(self, seconds: float) -> None:
        """Accept a "Select Kernel" dialog if one shows up within ``seconds``."""
        try:
            self.page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=seconds * 1000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: no dialog, nothing to do
            return
        self.page.locator(".jp-Dialog .jp-mod-accept").click()

    # ------------------------------------------------------------ running
    def run_all(self, timeout: float = 300) -> float:
        """Run → Run All Cells, and wait until every code cell has run. Returns the seconds it took."""
        start = time.monotonic()
        self.page.locator(".jp-Notebook").first.click()
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.locator("li[data-command='runmenu:run-all']").click()
        # done: every prompt numbered, or (a cell raised, so Run All stopped) none still running
        self.page.wait_for_function(
            """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                                  .map(e => e.textContent);
                       const raised = document.querySelector(
                           ".jp-Notebook [data-mime-type='application/vnd.jupyter.stderr']") !== null;
                       return p.length > 0 && (p.every(t => /\\[\\d+\\]/.test(t))
                                                || (raised && !p.some(t => t.includes('*')))); }""",
            timeout=timeout * 1000, polling=500)
        time.sleep(1)  # the last outputs arrive just after the prompt changes
        return time.monotonic() - start

    def cell(self, index: int):  # noqa: ANN201 - a playwright Locator
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def output(self, index: int):  # noqa: ANN201
        return self.cell(index).locator(".jp-Cell-outputArea")

    def wait_for_plots(self, index: int, count: int = 1, timeout: float = 60) -> None:
        """Wait until cell ``index``'s output holds ``count`` drawn plotly figures."""
        self.page.wait_for_function(
            "([i, n]) => document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
            ".querySelectorAll('.js-plotly-plot .main-svg').length >= n",
            arg=[index, count], timeout=timeout * 1000, polling=250)

    def errors_in_outputs(self) -> dict[int, str]:
        """Cell index → the text of its error output (a traceback), for every cell that raised."""
        found = self.page.evaluate(
            """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map((c, i) => {
                   const t = [...c.querySelectorAll("[data-mime-type='application/vnd.jupyter.stderr']")]
                       .map(e => e.innerText).join('\\n');
                   return [i, t]; })""")
        return {i: t for i, t in found if "Traceback" in t or "Error:" in t}

    def widget_problems(self) -> list[str]:
        """The widget manager's "cannot render" texts found on the page."""
        text = self.page.inner_text(".jp-Notebook")
        return [line for line in text.splitlines() if any(e in line for e in WIDGET_ERRORS)]

    # ------------------------------------------------------------ reading and interacting
    def plot_data(self, index: int, plot: int = 0) -> str:
        """The data of cell ``index``'s ``plot``-th plotly figure as plotly.js holds it (JSON text)."""
        return self.page.evaluate(
            """([i, k]) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
                 const gd = c.querySelectorAll('.js-plotly-plot')[k];
                 return JSON.stringify(gd.data, (key, v) => ArrayBuffer.isView(v) ? Array.from(v) : v); }""",
            [index, plot])

    def wait_for_change(self, index: int, before: str, plot: int = 0, timeout: float = 60) -> str:
        """Wait until cell ``index``'s plot data differs from ``before``; returns the new data."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.plot_data(index, plot)
            if now != before:
                return now
            time.sleep(0.25)
        raise AssertionError(f"the plot of cell {index} did not change within {timeout:.0f} s")

    def press_slider(self, index: int, key: str = "ArrowRight", times: int = 1, slider: int = 0) -> None:
        """Focus cell ``index``'s ``slider``-th ipywidgets slider handle and press ``key``."""
        handle = self.cell(index).locator(".widget-slider .noUi-handle").nth(slider)
        handle.scroll_into_view_if_needed()
        handle.focus()
        for _ in range(times):
            self.page.keyboard.press(key)

    def hover_point(self, index: int, plot: int = 0, point: int = 0) -> None:
        """Move the mouse onto the ``point``-th marker of cell ``index``'s ``plot``-th plotly figure.

        plotly.js answers with a hover event, which a FigureWidget passes to the kernel (its
        ``on_hover`` callbacks run there).
        """
        marker = self.cell(index).locator(".js-plotly-plot").nth(plot).locator(".scatterlayer path.point").nth(point)
        marker.scroll_into_view_if_needed()
        marker.hover(force=True)

    def screenshot_output(self, index: int, path: Path) -> Path:
        """A PNG of cell ``index``'s output area only (not the page)."""
        out = self.output(index)
        out.scroll_into_view_if_needed()
        out.screenshot(path=str(path))
        return Path(path)


# ---------------------------------------------------------------- the views notebook
HOVER = {"EmbeddingExplorer"}
"""Views whose screenshot is taken with the mouse on a point (the EmbeddingExplorer's side panel then shows it)."""

VIEWS = {  # class → (module in featgap.widgets, the runs it shows, extra keyword arguments)
    "GapExplorer": ("gap_explorer", ("pgd_at",), {}),
    "EmbeddingExplorer": ("embedding_explorer", ("standard", "pgd_at"), {}),
    "TrainingScrubber": ("training_scrubber", ("standard", "pgd_at"), {}),
    "SampleInspector": ("sample_inspector", ("afd",), {}),
    "RunComparer": ("run_comparer", ("standard", "pgd_at", "afd"), {}),
}
"""Each view of featgap.widgets, what to construct it on; its screenshot is named after its module.
A view taking ``run`` gets the first of its runs, one taking ``runs`` all of them."""


def setup_cell(runs: dict[str, Path], n: int = 40) -> str:
    """Imports, the run directories as ``RUNS`` and an ``n``-image test batch ``x, y``."""
    listing = "".join(f"    {k!r}: Path({str(v)!r}),\n" for k, v in runs.items())
    return ("from pathlib import Path\n"
            "import torch\n"
            "torch.set_num_threads(1)\n"
            "from featgap import data\n"
            f"RUNS = {{\n{listing}}}\n"
            f"x, y = data.load('mnist5k', 'test').stratified_subset({n}, 0).tensors()")


def view_cell(name: str, runs: dict[str, Path]) -> tuple[str | None, str]:
    """``(cell source, "")`` constructing view ``name`` on ``runs``, or ``(None, why)`` when it cannot be.

    The call is built from the class's signature: ``run`` gets the first of the view's runs in
    :data:`VIEWS`, ``runs`` all of them, ``x``/``y`` the batch; a view that does not exist yet, or
    needs an argument this does not know, is skipped with the reason.
    """
    module, names, extra = VIEWS[name]
    try:
        cls = getattr(importlib.import_module(f"featgap.widgets.{module}"), name)
    except (ImportError, AttributeError) as err:
        return None, f"{name} is not available yet ({type(err).__name__}: {err})"
    missing = [n for n in names if n not in runs]
    if missing:
        return None, f"{name} needs the runs {missing}"
    args: list[str] = []
    for p in inspect.signature(cls).parameters.values():
        if p.name == "run":
            value = f"RUNS[{names[0]!r}]"
        elif p.name == "runs":
            value = "[" + ", ".join(f"RUNS[{n!r}]" for n in names) + "]"
        elif p.name in ("x", "y"):
            value = p.name
        elif p.name in extra:
            value = repr(extra[p.name])
        elif p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return None, f"{name} needs argument {p.name!r}, which the screenshot notebook does not know how to give"
        else:
            continue
        args.append(value if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is inspect.Parameter.empty
                    else f"{p.name}={value}")
    return f"from featgap.widgets.{module} import {name}\nview = {name}({', '.join(args)})\nview", ""


def train_tiny_runs(root: Path) -> dict[str, Path]:
    """standard, PGD-AT and AFD smallcnn runs on mnist5k (a few minutes on 2 cores), each with eval.json.

    Runs already in ``root`` (with an ``eval.json``) are reused. PGD-AT and AFD start from the standard run.
    """
    from dataclasses import fields

    from featgap import data, runs
    from featgap.evaluate import evaluate
    from featgap.train import TrainConfig, Trainer

    test = data.load("mnist5k", "test")
    common = dict(dataset="mnist5k", model="smallcnn", lr=0.05, monitor_n=100, probe_n=40)
    keep = {"keep_checkpoints": 1} if "keep_checkpoints" in {f.name for f in fields(TrainConfig)} else {}
    configs = {
        "standard": TrainConfig(method="standard", epochs=3, **common, **keep),
        # PGD-AT from scratch at ε = 0.3 needs the demo's 8 epochs; fine-tuned from standard, 3 do
        "pgd_at": TrainConfig(method="pgd_at", epochs=3, eps_warmup_epochs=1, attack_steps=5,
                              init=str(root / "standard"), **common, **keep),
        "afd": TrainConfig(method="afd", epochs=1, attack_steps=3, init=str(root / "standard"), **common, **keep),
    }
    out = {}
    for name, cfg in configs.items():
        if runs.find_eval(root / name) is None:
            Trainer(cfg, out=root / name).fit()
            result = evaluate(runs.load(root / name), test, n=200, autoattack=False, pgd_steps=10)
            runs.write_eval(root / name, result.as_dict())
        out[name] = root / name
    return out


def screenshots(out: Path, run_root: Path | None = None, work: Path | None = None) -> dict[str, Path]:
    """One PNG per existing view (its cell's output area) in ``out``; returns view → file."""
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="featgap-shots-")) if work is None else work
    if run_root is not None and all((run_root / n / "config.json").exists() for n in ("standard", "pgd_at", "afd")):
        runs = {n: run_root / n for n in ("standard", "pgd_at", "afd")}
    else:
        print(f"training tiny runs in {work / 'runs'} …", flush=True)
        runs = train_tiny_runs(work / "runs")
    cells, index = [setup_cell(runs)], {}
    for name in VIEWS:
        source, why = view_cell(name, runs)
        if source is None:
            print(f"skipped {name}: {why}")
            continue
        index[name] = len(cells)
        cells.append(source)
    nb_dir = work / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    write_notebook(nb_dir / "views.ipynb", cells)
    made = {}
    with jupyter_lab(nb_dir) as lab, chromium() as browser:
        nb = NotebookPage.open(browser, lab, "views.ipynb", viewport=(1300, 2200))
        print(f"ran the notebook in {nb.run_all():.0f} s")
        errors = nb.errors_in_outputs()
        for name, i in index.items():
            if i in errors:
                print(f"{name} raised; no screenshot:\n{textwrap.indent(errors[i][-2000:], '    ')}")
                continue
            try:
                nb.wait_for_plots(i, timeout=120)
            except Exception:  # noqa: BLE001 - playwright's TimeoutError
                print(f"{name} drew no plotly figure within 120 s; no screenshot")
                continue
            time.sleep(1.5)  # let plotly finish its transitions
            if name in HOVER:
                try:
                    nb.hover_point(i, point=5)
                    time.sleep(2.0)  # the kernel's hover callback updates the side panel
                except Exception as err:  # noqa: BLE001 - playwright's errors: a screenshot without the hover
                    print(f"{name}: could not hover a point ({type(err).__name__}); screenshot without it")
            made[name] = nb.screenshot_output(i, out / f"{VIEWS[name][0]}.png")
            nb.page.mouse.move(0, 0)  # off the figures: no hover label or mode bar in the next screenshot
            print(f"{name}: {made[name]}")
        for problem in nb.widget_problems():
            print(f"widget problem on the page: {problem}")
        if nb.console_errors:
            print("browser console errors:\n  " + "\n  ".join(nb.console_errors))
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot every featgap view as JupyterLab renders it.")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="where the PNGs go (default docs/images)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="a directory with standard/, pgd_at/ and afd/ runs (default: train tiny ones)")
    parser.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    args = parser.parse_args(argv)
    why = unavailable()
    if why:
        print(f"cannot take screenshots: {why}")
        return 1
    made = screenshots(args.out, args.runs, args.work)
    print(f"{len(made)} screenshot(s) in {args.out}")
    return 0 if made else 1


if __name__ == "__main__":
    sys.exit(main())
