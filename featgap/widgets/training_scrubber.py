"""TrainingScrubber: an epoch slider over one or several runs — curves, the gap, and the map at that epoch.

What it shows, for the epoch the slider selects:

* the accuracy curves and the feature-gap trajectory at ``layer`` with its 95 % interval
  (:func:`featgap.plots.training.training_curves`' panels, read from ``metrics.jsonl`` and
  :func:`~featgap.probes.load_trajectory`), with the epoch marked by a vertical line that moves in
  place;
* per run, the map of natural (○) and adversarial (×) features of ``x`` at ``layer`` as the model
  was after that epoch — from the checkpoints the Trainer keeps with
  ``featgap train --keep-checkpoints EVERY`` (:func:`featgap.runs.load` with ``epoch=K``). Between
  kept epochs the latest kept one at or before the slider's epoch is shown.

Every kept checkpoint of every run is mapped **once**, when the view is built, in one frame
(:func:`~featgap.probes.embed_sequence`: ``"pca"`` fits one projection on all of them,
``"umap"`` uses AlignedUMAP), so moving the slider only swaps precomputed coordinates and a
sample's point can be followed from epoch to epoch. A run without kept checkpoints still shows
its curves, and the message line says how to keep them.

>>> view = TrainingScrubber(["runs/standard", "runs/pgd_at"], x, y, layer="pool")
>>> view.epoch.value = 3       # what the slider does
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from featgap import data as fg_data
from featgap import runs as fg_runs
from featgap.errors import FeatgapError
from featgap.plots.embedding import TRACES, add_class_key, add_embedding_map, embedding_points
from featgap.plots.training import (accuracy_table, add_epoch_marker, add_training_traces, epoch_ticks,
                                    gap_over_training, set_epoch_marker)
from featgap.probes import LayerReader, adversarial_examples, embed_sequence, extract_features, gap_table
from featgap.progress import progress
from featgap.widgets.base import View
from featgap.widgets.embedding_explorer import ALIGNED, check_images

KEEP_HINT = "train it with --keep-checkpoints EVERY (TrainConfig(keep_checkpoints=EVERY)) to see its embedding"


class TrainingScrubber(View):
    """An epoch slider over runs: accuracy curves, the gap trajectory, and the feature map at that epoch.

    Arguments:
        runs (path | list[path]): run directories (a loaded model has no history).
        x (Tensor | None): images ``(N, C, H, W)`` to map; y (Tensor | None): their labels. (Default:
            a stratified ``n``-image subset of the first run's test split)
        layer (str): the layer of the gap trajectory and of the map. (Default: ``"pool"``)
        method (str): ``"pca"`` or ``"umap"`` (AlignedUMAP across checkpoints). (Default: ``"pca"``)
        eps (float | None): PGD radius of the map's adversarial examples. (Default: each run's training ε)
        steps (int): PGD steps. (Default: 10)
        metric (str): the gap measure: ``l2``, ``linf``, ``cosine``, ``rel_l2``. (Default: ``"l2"``)
        n (int): images when ``x`` is not given. (Default: 200)
        device (str): where the checkpoints run. (Default: ``"cpu"``)
        names (list[str] | None): the runs' labels. (Default: their directory names)
        seed (int): seeds the subset, the attack and the map. (Default: 0)

    Examples::
        >>> TrainingScrubber("runs/pgd_at", x, y)                 # trained with --keep-checkpoints 1
        >>> TrainingScrubber(["runs/pgd_at", "runs/trades"], metric="linf", layer="stage2")
    """

    def __init__(self, runs: str | Path | Sequence[str | Path], x: torch.Tensor | None = None,
                 y: torch.Tensor | None = None, *, layer: str = "pool", method: str = "pca",
                 eps: float | None = None, steps: int = 10, metric: str = "l2", n: int = 200, device: str = "cpu",
                 names: Sequence[str] | None = None, seed: int = 0) -> None:
        dirs = [runs] if isinstance(runs, (str, Path)) else list(runs) if isinstance(runs, Sequence) else [runs]
        if not dirs:
            raise FeatgapError("no run given: pass a run directory (or a list of them)")
        for d in dirs:
            if not isinstance(d, (str, Path)):
                raise FeatgapError(f"TrainingScrubber needs run directories (their metrics.jsonl); "
                                   f"got a {type(d).__name__}")
            if not Path(d).is_dir():
                raise FeatgapError(f"run {d} does not exist")
        self.dirs = [Path(d) for d in dirs]
        self.names = [d.name for d in self.dirs] if names is None else [str(v) for v in names]
        if len(self.names) != len(self.dirs):
            raise FeatgapError(f"{len(self.names)} names for {len(self.dirs)} runs")
        if method not in ALIGNED:
            raise FeatgapError(f"unknown map method {method!r} over epochs; choose one of: {', '.join(ALIGNED)}"
                               + (" (t-SNE has no aligned variant)" if method == "tsne" else ""))
        configs = [fg_runs.read_config(d) for d in self.dirs]
        for d, cfg in zip(self.dirs, configs):
            LayerReader(fg_runs.build_model(cfg["model_card"]), [layer])  # an unknown layer: one line, now
        self.layer, self.method_name, self.steps, self.seed, self.device = layer, method, int(steps), int(seed), device
        self.eps = [float(eps) if eps is not None else float(c["config"]["eps"]) for c in configs]

        accuracy = accuracy_table(self.dirs, names=self.names)
        if accuracy.empty:
            raise FeatgapError(f"{', '.join(map(str, self.dirs))}: no epoch recorded yet (metrics.jsonl is empty)")
        gap = gap_over_training(self.dirs, names=self.names, metric=metric)
        notes = [f"{name} recorded no gap at layer '{layer}'" for name in self.names
                 if not ((gap["run"] == name) & (gap["layer"] == layer)).any()]
        gap = gap[gap["layer"] == layer]
        self.accuracy, self.gap = accuracy, gap

        self.kept = {i: fg_runs.checkpoint_epochs(d) for i, d in enumerate(self.dirs)}
        self.mapped = [i for i in range(len(self.dirs)) if self.kept[i]]
        notes += [f"{name} kept no checkpoints: {KEEP_HINT}" for i, name in enumerate(self.names) if not self.kept[i]]
        self.note = "; ".join(notes)
        if self.mapped:
            if x is None or y is None:
                card = configs[self.mapped[0]]["config"]
                test = fg_data.load(card["dataset"], "test", card.get("data_root", "data"))
                x, y = (test.stratified_subset(n, seed) if n < len(test) else test).tensors()
            check_images(x, y)
        self.x, self.y = x, y

        last = int(accuracy["epoch"].max())
        self.epoch = widgets.IntSlider(value=last, min=1, max=last, step=1, description="epoch",
                                       continuous_update=False)
        fig = self._build_figure(metric)
        super().__init__([self.epoch], fig)
        self.frames: dict[tuple[int, int], tuple[pd.DataFrame, pd.DataFrame]] = {}
        if self.mapped:
            self.frames = self._map_checkpoints()
            self._fix_map_ranges()
        self.update()
        self.clear_message()
        self.epoch.observe(self.refresh, "value")

    # ------------------------------------------------------------ building
    def _build_figure(self, metric: str) -> go.FigureWidget:
        k = max(1, len(self.mapped))
        rows = 3 if self.mapped else 2
        specs = [[{"colspan": k}] + [None] * (k - 1) for _ in range(2)] + ([[{}] * k] if self.mapped else [])
        titles = ["accuracy (%) by epoch", f"feature gap at '{self.layer}' by epoch ({metric}; 95 % CI)"]
        titles += [self.names[i] for i in self.mapped]
        fig = make_subplots(rows=rows, cols=k, specs=specs, subplot_titles=titles, vertical_spacing=0.07,
                            row_heights=[0.27, 0.27, 0.46] if self.mapped else [0.5, 0.5], horizontal_spacing=0.04)
        add_training_traces(fig, self.accuracy, self.gap)
        add_epoch_marker(fig, self.epoch.value, cells=((1, 1), (2, 1)))
        self.map_traces: dict[int, list[int]] = {}
        n = len(self.x) if self.x is not None else 0
        if self.mapped:
            placeholder = pd.DataFrame({"sample": np.tile(np.arange(n), 2), "input": ["nat"] * n + ["adv"] * n,
                                        "dim1": 0.0, "dim2": 0.0})
            for col, i in enumerate(self.mapped, start=1):
                self.map_traces[i] = add_embedding_map(fig, placeholder, row=3, col=col, showlegend=col == 1)
            add_class_key(fig, self.y.cpu().numpy())
            first = fig.get_subplot(3, 1).xaxis.plotly_name.replace("axis", "")
            first_y = fig.get_subplot(3, 1).yaxis.plotly_name.replace("axis", "")
            for col in range(2, k + 1):
                fig.update_xaxes(matches=first, row=3, col=col)
                fig.update_yaxes(matches=first_y, row=3, col=col)
            fig.update_xaxes(showticklabels=False, zeroline=False, row=3)
            fig.update_yaxes(showticklabels=False, zeroline=False, row=3)
        fig.update_xaxes(matches="x", row=2, col=1)
        epoch_ticks(fig, int(self.accuracy["epoch"].max()))
        fig.update_layout(template="plotly_white", height=860 if self.mapped else 560, hovermode="closest",
                          margin=dict(t=60, l=50, r=20, b=40))
        self._titles = {i: 2 + j for j, i in enumerate(self.mapped)}  # annotation index of each map's title
        return go.FigureWidget(fig)

    def _map_checkpoints(self) -> dict[tuple[int, int], tuple[pd.DataFrame, pd.DataFrame]]:
        """Every kept checkpoint's features (probes), mapped once in one frame; ``(run, epoch) -> (table, preds)``."""
        slices, keys, preds = [], [], []
        total = sum(len(self.kept[i]) for i in self.mapped)
        with self.busy(f"mapping {total} kept checkpoints ({len(self.x)} images, '{self.layer}' features)"):
            for i, epoch in progress([(i, e) for i in self.mapped for e in self.kept[i]], desc="checkpoints"):
                model = fg_runs.load(self.dirs[i], epoch=epoch, device=self.device)
                x_adv = adversarial_examples(model, self.x, self.y, eps=self.eps[i], steps=self.steps, seed=self.seed)
                f_nat = extract_features(model, self.x, [self.layer])[self.layer]
                f_adv = extract_features(model, x_adv, [self.layer])[self.layer]
                slices.append((f_nat, f_adv))
                keys.append((i, epoch))
                preds.append(gap_table(model, self.x, self.y, x_adv, layers=[self.layer]))
            dims = {f.shape[1] for f, _ in slices}
            if len(dims) > 1:
                raise FeatgapError(f"the runs' '{self.layer}' features differ in size ({sorted(dims)}): "
                                   "one frame needs the same layer size; scrub them one at a time")
            maps = embed_sequence(slices, method=ALIGNED[self.method_name], seed=self.seed)
        return {key: (emb.table, pred) for key, emb, pred in zip(keys, maps, preds)}

    def _fix_map_ranges(self) -> None:
        """One fixed range over every frame, so the maps do not rescale as the slider moves (one frame)."""
        tables = [table for table, _ in self.frames.values()]
        with self.figure_widget.batch_update():
            for dim, update in (("dim1", self.figure_widget.update_xaxes), ("dim2", self.figure_widget.update_yaxes)):
                lo = min(float(t[dim].min()) for t in tables)
                hi = max(float(t[dim].max()) for t in tables)
                pad = 0.05 * (hi - lo) or 1.0
                update(range=[lo - pad, hi + pad], autorange=False, row=3)

    # ------------------------------------------------------------ updating
    def shown_epoch(self, i: int, epoch: int) -> int | None:
        """The kept epoch of run ``i`` shown at slider epoch ``epoch``: the latest at or before it (None: none yet)."""
        before = [k for k in self.kept[i] if k <= epoch]
        return before[-1] if before else None

    def update(self) -> None:
        epoch = int(self.epoch.value)
        fig = self.figure_widget
        with fig.batch_update():
            set_epoch_marker(fig, epoch)
            for i in self.mapped:
                kept = self.shown_epoch(i, epoch)
                traces = [fig.data[t] for t in self.map_traces[i]]
                title = fig.layout.annotations[self._titles[i]]
                if kept is None:
                    for trace in traces:
                        trace.update(x=[], y=[])
                    title.text = f"{self.names[i]}: no checkpoint kept by epoch {epoch}"
                    continue
                table, preds = self.frames[(i, kept)]
                points = embedding_points(table, preds)
                for trace, name in zip(traces, TRACES):
                    trace.update(points[name])
                title.text = f"{self.names[i]} · epoch {kept}"

    def clear_message(self) -> None:
        """Clear the message line, but keep the standing note (e.g. a run without kept checkpoints)."""
        super().clear_message()
        if getattr(self, "note", ""):
            self.show_info(self.note)
