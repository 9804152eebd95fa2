"""RunComparer: several runs side by side — results table, gap vs robust accuracy, alignment measures.

What it shows (one figure, :func:`featgap.plots.results.run_comparison`):

* the results table of the selected runs from their evaluations (:func:`featgap.runs.read_eval`):
  clean / PGD / AutoAttack / robust accuracy with ``n`` and 95 % intervals, the mean feature gap, and the sanity checks —
  a failed check is named in red, never hidden; a run without an evaluation keeps its row, with a note;
* the mean feature gap against robust accuracy, one labelled point per run;
* with images ``x, y``: the alignment measures of :func:`featgap.probes.geometry_table` at
  ``layer`` (misalignment, alignment, uniformity), one bar per run — computed once per run (with a
  progress bar in the view) and kept in memory.

Controls: a multi-select of the runs and the gap measure (``l2``, ``linf``, ``cosine``,
``rel_l2``). Changing either updates the existing traces in place; an empty selection leaves the
figure as it was and says so in the message line.

>>> view = RunComparer(["runs/demo/standard", "runs/demo/pgd_at"], x, y, eps=0.3)
>>> view                      # in a notebook; view.figure() for a static copy
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go
import torch

from featgap import runs as run_dirs
from featgap.errors import FeatgapError
from featgap.plots.results import load_results, run_colors, run_comparison
from featgap.probes import GAP_METRICS, LayerReader, geometry_table
from featgap.widgets.base import View, load_model


class RunComparer(View):
    """Compare runs: results table, gap-vs-robust scatter and alignment bars (see the module docstring).

    Arguments:
        runs (list[str | Path]): run directories (at least one; each must exist and hold a
            ``config.json``; its evaluation is read when present).
        x (Tensor | None): natural images ``(N, C, H, W)`` in [0, 1] for the alignment measures;
            ``None`` leaves the alignment panels out. y (Tensor | None): their labels ``(N,)``
            (every class needs a sample: the class centroids come from ``x``).
        eps (float | None): attack radius for the alignment measures. (Default: each run's
            dataset ε from its ``config.json``)
        layer (str): the layer measured. (Default: ``"pool"``)
        device (str): where the models run. (Default: ``"cpu"``)
        evaluation (dict | None): which evaluation of each run to show, by settings: keywords of
            :func:`featgap.runs.read_eval`, e.g. ``{"n": 150, "autoattack": True}``. (Default:
            ``None``, the largest, AutoAttack preferred; the table's source files are in
            ``results["eval_file"]``)

    Attributes:
        select (SelectMultiple): which runs are shown. metric (Dropdown): the gap measure.
        results (DataFrame): :func:`featgap.plots.results.load_results` of all runs.

    Examples::
        >>> view = RunComparer(sorted(Path("runs/demo").iterdir()), x, y)
        >>> view.select.value = ("standard", "pgd_at"); view.metric.value = "cosine"
    """

    def __init__(self, runs: Sequence[str | Path], x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
                 eps: float | None = None, layer: str = "pool", device: str = "cpu",
                 evaluation: dict | None = None) -> None:
        if isinstance(runs, (str, Path)):
            runs = [runs]
        paths = [Path(r) for r in runs]
        if not paths:
            raise FeatgapError("RunComparer needs at least one run directory")
        if (x is None) != (y is None):
            raise FeatgapError("give both x and y (images and labels) for the alignment measures, or neither")
        self.results = load_results(paths, evaluation=evaluation)  # a missing run or a directory without config.json: one line
        self.paths = dict(zip(self.results["run"], paths))
        self.x, self.y, self.eps, self.layer, self.device = x, y, eps, layer, device
        self.models = {}
        if x is not None:
            if len(x) != len(y):
                raise FeatgapError(f"x has {len(x)} images but y has {len(y)} labels")
            for name, path in self.paths.items():
                _, model = load_model(path, device)
                LayerReader(model, [layer])  # an unknown layer name is a one-line FeatgapError, here
                self.models[name] = model
        self.colors = run_colors(list(self.results["run"]))

        names = list(self.results["run"])
        self.select = widgets.SelectMultiple(options=names, value=tuple(names), rows=min(max(len(names), 2), 6),
                                             description="runs", layout=widgets.Layout(width="280px"))
        self.metric = widgets.Dropdown(options=list(GAP_METRICS), value="l2", description="gap metric",
                                       layout=widgets.Layout(width="220px"))
        super().__init__([self.select, self.metric], go.FigureWidget())
        first = self._comparison(names)  # the traces, created once; update() rewrites their data
        self.figure_widget.add_traces(list(first.data))
        self.figure_widget.update_layout(first.layout)
        self.select.observe(self.refresh, "value")
        self.metric.observe(self.refresh, "value")

    # ------------------------------------------------------------ computing
    def _eps(self, name: str) -> float:
        if self.eps is not None:
            return float(self.eps)
        config = run_dirs.read_config(self.paths[name])
        eps = config.get("config", {}).get("eps")
        return float(eps if eps is not None else config["dataset"]["eps"])

    def geometry(self, name: str) -> pd.DataFrame:
        """``geometry_table`` of run ``name`` on ``(x, y)`` at ``layer`` (cached per run, ε and layer)."""
        eps = self._eps(name)

        def compute() -> pd.DataFrame:
            with self.busy(f"measuring the feature geometry of {name} (ε = {eps:g}, {self.layer})"):
                return geometry_table(self.models[name], self.x, self.y, layers=[self.layer], eps=eps).assign(run=name)

        return self.cached((str(self.paths[name]), eps, self.layer), compute)

    def _comparison(self, names: Sequence[str]) -> go.Figure:
        results = self.results.set_index("run").loc[list(names)].reset_index()
        geometry = pd.concat([self.geometry(n) for n in names], ignore_index=True) if self.models else None
        return run_comparison(results, geometry, metric=self.metric.value, colors=self.colors)

    # ------------------------------------------------------------ updating
    def update(self) -> None:
        """Redraw for the selected runs and gap measure: trace data and axis titles, in place."""
        names = list(self.select.value)
        if not names:
            raise FeatgapError("select at least one run to compare")
        fig = self._comparison(names)
        fw = self.figure_widget
        with fw.batch_update():
            for old, trace in zip(fw.data, fig.data):
                props = trace.to_plotly_json()
                for key in ("type", "xaxis", "yaxis", "domain", "uid"):
                    props.pop(key, None)
                old.update(props, overwrite=True)
            fw.layout.title.text = fig.layout.title.text
            for axis in fig.layout:
                if axis.startswith(("xaxis", "yaxis")):
                    fw.layout[axis].title.text = fig.layout[axis].title.text
