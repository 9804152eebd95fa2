"""EmbeddingExplorer: natural and adversarial features on one map, one run or two side by side.

What it shows: the features of ``x`` at one layer (:func:`~featgap.probes.extract_features`)
and of their PGD adversarial examples (:func:`~featgap.probes.adversarial_examples`), mapped to
2-D by PCA, UMAP or t-SNE (:func:`~featgap.probes.embed`), drawn by
:func:`featgap.plots.embedding.embedding_maps`: natural points as circles, adversarial ones as
crosses, coloured by class, a segment joining each pair. Hovering a point shows its image, its
adversarial example and both predictions (from :func:`~featgap.probes.gap_table`) in the panel
beside the map; clicking it opens the sample in a :class:`SampleInspector` when one is given.

Two runs ("before / after training") are mapped in **one** frame with
:func:`~featgap.probes.embed_sequence` (``"pca"``: one projection fitted on both runs' rows;
``"umap"``: AlignedUMAP), so their panels share axes and a sample's two points can be compared.
t-SNE has no aligned variant and is offered for one run only.

Controls: the map method and the layer. Each (run, layer)'s attack and features, and each
(method, layer)'s map, are computed once (the maps are also cached on disk by
:mod:`featgap.cache`), under a progress bar.

>>> view = EmbeddingExplorer(["runs/standard", "runs/pgd_at"], x, y, method="pca")
>>> view                       # in a notebook; view.figure() for a static copy
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import nn

from featgap import runs as fg_runs
from featgap.errors import FeatgapError
from featgap.plots.embedding import TRACES, embedding_maps, embedding_points
from featgap.probes import LayerReader, adversarial_examples, embed, embed_sequence, extract_features, gap_table
from featgap.probes.extract import as_float_images
from featgap.widgets.base import View, load_model

METHODS = ("pca", "umap", "tsne")
ALIGNED = {"pca": "pca", "umap": "aligned_umap"}
"""The method of :func:`~featgap.probes.embed_sequence` that maps two runs in one frame."""

Run = str | Path | nn.Module


class Inspector(Protocol):
    """What the explorer needs of a sample inspector: ``show(index)`` opens sample ``index`` of ``x``."""

    def show(self, index: int) -> Any: ...


def as_run_list(runs: Run | Sequence[Run], most: int) -> list[Run]:
    """One run or a list of 1 … ``most`` runs, as a list (a one-line error otherwise)."""
    items = [runs] if isinstance(runs, (str, Path, nn.Module)) else list(runs)
    if not items:
        raise FeatgapError("no run given: pass a run directory (or a list of them)")
    if len(items) > most:
        raise FeatgapError(f"give at most {most} runs, got {len(items)}")
    return items


def check_images(x: torch.Tensor, y: torch.Tensor) -> None:
    """One-line errors for an empty selection or images and labels that do not match."""
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise FeatgapError("x and y must be tensors (images (N, C, H, W) and labels (N,))")
    if len(x) == 0:
        raise FeatgapError("empty selection: x holds no images")
    if x.ndim != 4:
        raise FeatgapError(f"x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) != len(y):
        raise FeatgapError(f"x has {len(x)} images but y has {len(y)} labels")


def image_rgb(image: torch.Tensor) -> np.ndarray:
    """One image ``(C, H, W)`` (float in [0, 1] or uint8) as an ``(H, W, 3)`` uint8 array for ``go.Image``."""
    img = as_float_images(image[None])[0].detach().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return (img[:3] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


class EmbeddingExplorer(View):
    """UMAP / PCA / t-SNE map of natural (○) and adversarial (×) features of one run, or two side by side.

    Arguments:
        runs (path | nn.Module | list): one run (a run directory or a loaded model), or two to
            compare "before / after" in one aligned frame.
        x (Tensor): images ``(N, C, H, W)`` in [0, 1] (or uint8). y (Tensor): labels ``(N,)``.
        method (str): ``"pca"``, ``"umap"`` or ``"tsne"`` (one run only). (Default: ``"pca"``)
        layer (str): the layer whose features are mapped. (Default: ``"pool"``)
        eps (float | None): PGD radius. (Default: the first run's training ε)
        steps (int): PGD steps. (Default: 10)
        inspector (object | None): anything with ``show(index)`` (a
            :class:`~featgap.widgets.SampleInspector`); a click on a point calls it. (Default: None)
        device (str): where the models run. (Default: ``"cpu"``)
        names (list[str] | None): the runs' labels. (Default: their directory names)
        seed (int): seeds the attack and the map. (Default: 0)

    Examples::
        >>> EmbeddingExplorer("runs/pgd_at", x, y, method="umap", layer="stage2")
        >>> EmbeddingExplorer(["runs/standard", "runs/afd"], x, y, inspector=SampleInspector("runs/afd", x, y))
    """

    def __init__(self, runs: Run | Sequence[Run], x: torch.Tensor, y: torch.Tensor, *, method: str = "pca",
                 layer: str = "pool", eps: float | None = None, steps: int = 10, inspector: Inspector | None = None,
                 device: str = "cpu", names: Sequence[str] | None = None, seed: int = 0) -> None:
        run_list = as_run_list(runs, most=2)
        loaded = [load_model(r, device) for r in run_list]
        self.models = [m for _, m in loaded]
        self.names = [n for n, _ in loaded] if names is None else [str(n) for n in names]
        if len(self.names) != len(self.models):
            raise FeatgapError(f"{len(self.names)} names for {len(self.models)} runs")
        check_images(x, y)
        self.x, self.y = x, y
        methods = METHODS if len(self.models) == 1 else tuple(ALIGNED)
        if method not in methods:
            raise FeatgapError(f"unknown map method {method!r} for {len(self.models)} run(s); choose one of: "
                               f"{', '.join(methods)}" + (" (t-SNE has no aligned variant for two runs)"
                                                          if method == "tsne" else ""))
        for m in self.models:
            LayerReader(m, [layer])  # an unknown layer: one line, now
        if eps is None:
            first = run_list[0]
            if isinstance(first, nn.Module):
                raise FeatgapError("give eps= (the attack radius): a loaded model has no run config to read it from")
            eps = float(fg_runs.read_config(first)["config"]["eps"])
        if inspector is not None and not callable(getattr(inspector, "show", None)):
            raise FeatgapError(f"inspector must have a show(index) method; {type(inspector).__name__} has none")
        self.eps, self.steps, self.seed, self.inspector = float(eps), int(steps), int(seed), inspector

        layers = [n for n in getattr(self.models[0], "layer_names", ()) if all(n in getattr(m, "layer_names", ())
                                                                                for m in self.models)]
        self.method = widgets.Dropdown(options=list(methods), value=method, description="map")
        self.layer = widgets.Dropdown(options=layers if layer in layers else [*layers, layer], value=layer,
                                      description="layer")

        # traces created once, on an all-zero placeholder map; update() fills them in place
        n = len(x)
        placeholder = pd.DataFrame({"sample": np.tile(np.arange(n), 2), "input": ["nat"] * n + ["adv"] * n,
                                    "dim1": 0.0, "dim2": 0.0})
        labels = pd.DataFrame({"sample": np.arange(n), "label": y.cpu().numpy()})
        fig = go.FigureWidget(embedding_maps([placeholder] * len(self.models), [labels] * len(self.models),
                                             names=self.names))
        self.panel_images = go.FigureWidget(make_subplots(rows=1, cols=2, subplot_titles=("natural", "adversarial"),
                                                          horizontal_spacing=0.05))
        blank = np.zeros((*x.shape[-2:], 3), np.uint8)
        for col in (1, 2):
            self.panel_images.add_trace(go.Image(z=blank, hoverinfo="skip"), row=1, col=col)
        self.panel_images.update_layout(width=300, height=180, margin=dict(t=25, l=5, r=5, b=5))
        self.panel_images.update_annotations(font_size=12)  # "adversarial (run name)" fits over its image
        self.panel_images.update_xaxes(visible=False)
        self.panel_images.update_yaxes(visible=False)
        self.panel_text = widgets.HTML(value="<i>hover over a point</i>")
        self.panel = widgets.VBox([self.panel_text, self.panel_images], layout=widgets.Layout(width="310px"))
        super().__init__([self.method, self.layer], fig)
        self.widget.children = (self.controls, self.output, self.message, widgets.HBox([fig, self.panel]))
        self.selected: int | None = None
        for i in range(len(self.models)):
            for j, name in enumerate(TRACES):
                trace = fig.data[3 * i + j]
                trace.meta = {"run": i, "trace": name}
                if name != "pairs":
                    trace.on_click(self.on_click)
                    trace.on_hover(self.on_hover)
        self.update()
        self.method.observe(self.refresh, "value")
        self.layer.observe(self.refresh, "value")

    # ------------------------------------------------------------ computing (probes only)
    def _attack(self, i: int) -> torch.Tensor:
        return self.cached(("x_adv", i), lambda: adversarial_examples(
            self.models[i], self.x, self.y, eps=self.eps, steps=self.steps, seed=self.seed))

    def features(self, i: int, layer: str) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
        """``(f_nat, f_adv, predictions)`` of run ``i`` at ``layer``: the features of ``x`` and of its
        adversarial examples, and :func:`~featgap.probes.gap_table`'s rows (labels, predictions, outcome)."""
        def compute() -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
            model, x_adv = self.models[i], self._attack(i)
            f_nat = extract_features(model, self.x, [layer])[layer]
            f_adv = extract_features(model, x_adv, [layer])[layer]
            return f_nat, f_adv, gap_table(model, self.x, self.y, x_adv, layers=[layer])
        return self.cached(("features", i, layer), compute)

    def maps(self, method: str, layer: str) -> list:
        """The :class:`~featgap.probes.Embedding` of each run for ``method`` and ``layer`` (one frame for two runs)."""
        def compute() -> list:
            with self.busy(f"attacking {len(self.x)} images and mapping '{layer}' features with {method}"):
                feats = [self.features(i, layer) for i in range(len(self.models))]
                if len(feats) == 1:
                    return [embed(feats[0][0], feats[0][1], method=method, seed=self.seed)]
                return embed_sequence([(f, fa) for f, fa, _ in feats], method=ALIGNED[method], seed=self.seed)
        return self.cached(("maps", method, layer), compute)

    # ------------------------------------------------------------ drawing
    def update(self) -> None:
        method, layer = self.method.value, self.layer.value
        maps = self.maps(method, layer)
        preds = [self.features(i, layer)[2] for i in range(len(self.models))]
        fig = self.figure_widget
        with fig.batch_update():
            for i, (emb, pred) in enumerate(zip(maps, preds)):
                points = embedding_points(emb.table, pred)
                for j, name in enumerate(TRACES):
                    fig.data[3 * i + j].update(points[name])
            fig.layout.title.text = (f"{method.upper()} of '{layer}' features: natural ○, adversarial × "
                                     f"(PGD-{self.steps}, ε = {self.eps:g}), coloured by class")

    # ------------------------------------------------------------ hover, click and the sample panel
    @staticmethod
    def _sample_of(trace: Any, points: Any) -> int | None:
        inds = list(getattr(points, "point_inds", []) or [])
        if not inds or trace.customdata is None:
            return None
        return int(trace.customdata[inds[0]])

    def on_hover(self, trace: Any, points: Any, state: Any = None) -> None:
        """FigureWidget hover callback: show the hovered sample in the panel."""
        sample = self._sample_of(trace, points)
        if sample is not None:
            self.show_sample(sample, (trace.meta or {}).get("run", 0))

    def on_click(self, trace: Any, points: Any, state: Any = None) -> None:
        """FigureWidget click callback: open the clicked sample in the inspector (if any) and in the panel."""
        sample = self._sample_of(trace, points)
        if sample is None:
            return
        self.selected = sample
        self.show_sample(sample, (trace.meta or {}).get("run", 0))
        if self.inspector is not None:
            self.inspector.show(sample)

    def show_sample(self, sample: int, run: int = 0) -> None:
        """Put sample ``sample``'s natural and adversarial image (of run ``run``) and its predictions in the panel."""
        layer = self.layer.value
        x_adv = self._attack(run)
        lines = [f"<b>sample {sample}</b> · class {int(self.y[sample])}"]
        for i, name in enumerate(self.names):
            row = self.features(i, layer)[2].drop_duplicates("sample").set_index("sample").loc[sample]
            lines.append(f"{html.escape(name)}: natural → {int(row['nat_pred'])}, adversarial → "
                         f"{int(row['adv_pred'])} ({row['outcome']})")
        with self.panel_images.batch_update():
            self.panel_images.data[0].z = image_rgb(self.x[sample])
            self.panel_images.data[1].z = image_rgb(x_adv[sample])
            self.panel_images.layout.annotations[1].text = f"adversarial ({html.escape(self.names[run])})"
        self.panel_text.value = "<br>".join(lines)
