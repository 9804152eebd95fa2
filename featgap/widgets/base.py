"""What every view shares: a row of controls, a FigureWidget updated in place, a message line,
a progress area, an in-memory cache, a static ``figure()``, and errors shown, not raised.

A view is built from stock ipywidgets and a plotly ``FigureWidget`` only (no custom JavaScript),
so it renders in JupyterLab 4, Notebook 7 and VS Code. A subclass:

1. builds its controls and its ``go.FigureWidget`` (traces created once, with placeholder data);
2. calls ``super().__init__(controls, figure)``;
3. implements :meth:`View.update`, which computes (through :meth:`View.cached` and the probes)
   and writes the new numbers into the existing traces inside ``with self.figure_widget.batch_update():``;
4. wires its controls with ``control.observe(self.refresh, "value")`` — sliders are created with
   ``continuous_update=False``, so a drag computes once, on release.

Bad input found while *building* a view (a run that does not exist, a layer the model lacks) is
a one-line :class:`~featgap.errors.FeatgapError`; bad input found while *interacting* (an empty
selection) is shown in the view's message line, and the figure keeps its last good state.

>>> view = GapExplorer(run, x, y)        # any View subclass
>>> view                                  # the widget, in a notebook
>>> view.figure().write_html("gap.html")  # its current state, static
"""

from __future__ import annotations

import html
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import ipywidgets as widgets
import plotly.graph_objects as go
from torch import nn

from featgap import runs
from featgap.errors import FeatgapError

T = TypeVar("T")


class View:
    """Base class of the views in :mod:`featgap.widgets` (see the module docstring)."""

    def __init__(self, controls: Sequence[widgets.Widget], figure: go.FigureWidget) -> None:
        self.figure_widget = figure
        self.message = widgets.HTML(value="", layout=widgets.Layout(min_height="1.5em"))
        self.output = widgets.Output()
        """Where long work draws its progress bar (tqdm.auto renders a widget bar here)."""
        self.controls = widgets.HBox(list(controls), layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([self.controls, self.output, self.message, figure])
        self._cache: dict[Hashable, Any] = {}
        self.last_error: str | None = None

    # ------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        """Display the view's widget when the view is the value of a notebook cell."""
        return self.widget._repr_mimebundle_(**kwargs)

    def figure(self) -> go.Figure:
        """The current state as a static ``go.Figure`` (for nbconvert, the HTML report, offline frontends).

        A copy of the widget's traces and layout, with their arrays as plain numbers (plotly 6's
        ``to_dict()`` would hand over base64-encoded ``{"dtype", "bdata"}`` records instead) and
        the widget's subplot grid, so ``view.figure().data[0].y`` reads like the widget's.
        """
        return go.Figure(self.figure_widget)

    # ------------------------------------------------------------ updating
    def update(self) -> None:
        """Recompute for the controls' current values and update the figure's traces in place."""
        raise NotImplementedError

    def refresh(self, change: object = None) -> None:
        """Call :meth:`update`; a :class:`FeatgapError` goes to the message line instead of a traceback.

        Use it as the observer of every control: ``slider.observe(self.refresh, "value")``.
        """
        try:
            self.update()
        except FeatgapError as err:
            self.show_error(str(err))
        else:
            self.clear_message()

    def show_error(self, text: str) -> None:
        self.last_error = text
        self.message.value = f'<span style="color:#b00020">⚠ {html.escape(text)}</span>'

    def show_info(self, text: str) -> None:
        self.message.value = f'<span style="color:#555">{html.escape(text)}</span>'

    def clear_message(self) -> None:
        self.last_error = None
        self.message.value = ""

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per ``key`` (e.g. ``(run, eps, attack, layer)``), then from memory."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """Long work: say what is happening, show progress bars in the view, disable the controls."""
        self.show_info(f"{what} …")
        disabled = {c: getattr(c, "disabled", None) for c in self.controls.children}
        for c in disabled:
            if disabled[c] is not None:
                c.disabled = True
        try:
            with self.output:
                yield
        finally:
            clear_quietly(self.output)
            for c, was in disabled.items():
                if was is not None:
                    c.disabled = was
            self.clear_message()


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (a notebook, JupyterLab, VS Code), where widgets render."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def clear_quietly(output: widgets.Output) -> None:
    """Empty an ``Output`` widget; outside a kernel without writing terminal control codes.

    ``Output.clear_output`` calls IPython's ``clear_output``, which in a plain Python process
    (a script, pytest) prints ``ESC[2K`` + carriage return to stdout and stderr. There nothing
    renders the widget, so dropping the outputs it holds is all there is to do.
    """
    if in_kernel():
        output.clear_output()
    else:
        output.outputs = ()


def load_model(run: str | Path | nn.Module, device: str = "cpu") -> tuple[str, nn.Module]:
    """``(name, model)`` from a run directory or an already loaded model, in eval mode.

    A path that is not a run directory is a one-line :class:`FeatgapError`.
    """
    if isinstance(run, nn.Module):
        return type(run).__name__, run.eval()
    path = Path(run)
    if not path.is_dir():
        raise FeatgapError(f"run {path} does not exist")
    return path.name, runs.load(path, device=device)
