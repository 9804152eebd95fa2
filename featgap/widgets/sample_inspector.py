"""SampleInspector: one image under attack — what changed in the pixels, the prediction, the
explanation and the features.

For the chosen sample the figure (:func:`featgap.plots.sample_overview`) shows:

* the natural image, the perturbation ``δ = x_adv − x`` amplified to be seen (its factor and
  ``max |δ|`` in the title) and the adversarial image;
* the top-k class probabilities of both inputs;
* attribution maps of both inputs for the true class, side by side on one colour scale, with
  their top-k overlap and rank correlation (:func:`featgap.probes.compare_attributions`;
  saliency by default, integrated gradients or input × gradient on request);
* the feature gap of this sample at every layer (its :func:`featgap.probes.gap_table` rows);
* for a model with two feature components (an AFD student, Zhou et al., arXiv 2401.14707):
  ‖f1‖, ‖f2‖ and cos(f1, f2) of both inputs (:func:`featgap.probes.component_norms`), whether
  the confused head finds its target ŷc, and the class each head predicts.

Everything of one sample is computed once, when it is first shown, and kept in memory. Other
views open a sample here with :meth:`SampleInspector.show` (the EmbeddingExplorer does on a click).

>>> inspector = SampleInspector("runs/demo/afd", x[:100], y[:100])     # ε: the run's training ε
>>> inspector.show(7)                                                  # or move its slider
>>> inspector.figure().write_html("sample7.html")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from torch import nn

from featgap import runs
from featgap.attacks import eval_mode
from featgap.errors import FeatgapError
from featgap.methods import Method, get as get_method
from featgap.plots.sample import sample_overview
from featgap.probes import (ATTRIBUTION_METHODS, GAP_METRICS, AttributionComparison, LayerReader,
                            adversarial_examples, compare_attributions, component_norms, extract_features, gap_table)
from featgap.probes.extract import model_device
from featgap.widgets.base import View, load_model
from featgap.widgets.gap_explorer import (ATTACKS, attack_label, check_batch, check_eps, copy_figure, make_attack,
                                          training_eps)


@dataclass
class SampleState:
    """What the inspector computed for one sample (all from the probes, on the one-image batch).

    Attributes:
        index (int): the sample's index in ``x``.
        x_adv (Tensor): its adversarial example ``(1, C, H, W)``.
        gap (DataFrame): its :func:`~featgap.probes.gap_table` rows, one per layer.
        probs (Tensor): ``(2, classes)`` softmax of the model's logits, natural then adversarial.
        attributions (AttributionComparison): :func:`~featgap.probes.compare_attributions` of the sample.
        components (DataFrame | None): :func:`~featgap.probes.component_norms` rows (``nat``, ``adv``).
        heads (dict | None): ``{"nat": (f1 head's class, f2 head's class), "adv": (...)}``.
    """

    index: int
    x_adv: torch.Tensor
    gap: pd.DataFrame
    probs: torch.Tensor
    attributions: AttributionComparison
    components: pd.DataFrame | None = None
    heads: dict[str, tuple[int, int]] | None = None


def has_components(model: object) -> bool:
    """Whether ``model`` keeps the component contract of :func:`featgap.probes.component_norms`."""
    return callable(getattr(model, "components", None))


def head_predictions(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, tuple[int, int]] | None:
    """The class each head of a component model predicts for one natural and one adversarial image.

    ``argmax`` of ``components(x)["logits1"]`` (the intrinsic head, which is also the model's
    prediction) and of ``["logits2"]`` (the confused head); ``None`` when ``components`` gives
    no logits.
    """
    out: dict[str, tuple[int, int]] = {}
    device = model_device(model)
    with torch.no_grad(), eval_mode(model):
        for kind, images in (("nat", x), ("adv", x_adv)):
            c = model.components(images.to(device))
            if "logits1" not in c or "logits2" not in c:
                return None
            out[kind] = (int(c["logits1"].argmax(1)[0]), int(c["logits2"].argmax(1)[0]))
    return out


def component_model(run: str | Path | nn.Module, device: str = "cpu") -> nn.Module | None:
    """The run's model with ``components(x)``, or ``None`` when it has none.

    A loaded model is used as it is. From a run directory the method's training-time module is
    rebuilt (:meth:`featgap.methods.Method.load_wrapper`; AFD's student), since the exported
    model has its disentangler folded away; a method that trains the plain model has none.
    """
    if isinstance(run, nn.Module):
        return run if has_components(run) else None
    method = get_method(runs.read_config(run)["config"]["method"])
    if method.start is Method.start:  # trains the plain model: no wrapper, no components
        return None
    wrapper = method.load_wrapper(run, device)
    return wrapper if has_components(wrapper) else None


class SampleInspector(View):
    """One sample: images, perturbation, top-k predictions, attributions, per-layer gap, and AFD components.

    Arguments:
        run (str | Path | nn.Module): a run directory or a loaded model.
        x (Tensor): natural images ``(N, C, H, W)`` in [0, 1] (or uint8).
        y (Tensor): their labels ``(N,)``.
        index (int): the sample shown first. (Default: 0)
        x_adv (Tensor | None): adversarial examples of ``x`` to inspect (e.g. the ones another
            view drew); made per sample with ``attack`` at ``eps`` when ``None``. (Default: None)
        eps (float | None): the attack radius in [0, 1]. (Default: the run's training ε)
        attack (str): ``"pgd"``, ``"fgsm"`` or ``"margin"`` (see :func:`~featgap.widgets.gap_explorer.make_attack`).
            (Default: ``"pgd"``)
        pgd_steps (int): steps of the PGD attacks. (Default: 10)
        layers (list[str] | None): the layers of the gap panel. (Default: the model's ``layer_names``)
        methods (list[str]): attribution methods offered, from
            :data:`featgap.probes.ATTRIBUTION_METHODS`. (Default: ``("saliency",)``)
        components (bool | None): the component panel — ``None`` shows it when the model has
            components, ``True`` requires them (a one-line error otherwise), ``False`` never.
        metric (str): the gap measure shown first. (Default: ``"l2"``)
        k (int): classes in the top-k panel. (Default: 5)
        class_names (list[str] | None): class names by index. (Default: the indices)
        device (str): where the model runs. (Default: ``"cpu"``)

    Attributes:
        index, method, metric: the controls. state (SampleState): what is shown now.
        component_model (nn.Module | None): the model the component panel reads.

    Examples::
        >>> inspector = SampleInspector("runs/demo/pgd_at", x, y, methods=("saliency", "integrated_gradients"))
        >>> inspector.show(3); inspector.state.gap
    """

    def __init__(self, run: str | Path | nn.Module, x: torch.Tensor, y: torch.Tensor, *, index: int = 0,
                 x_adv: torch.Tensor | None = None, eps: float | None = None, attack: str = "pgd",
                 pgd_steps: int = 10, layers: Sequence[str] | None = None,
                 methods: Sequence[str] = ("saliency",), components: bool | None = None, metric: str = "l2",
                 k: int = 5, class_names: Sequence[str] | None = None, device: str = "cpu") -> None:
        self.name, self.model = load_model(run, device)
        x, self.y = check_batch(x, y)
        self.x = x.float().div(255.0) if x.dtype == torch.uint8 else x
        if x_adv is not None:
            if not torch.is_tensor(x_adv) or tuple(x_adv.shape) != tuple(self.x.shape):
                raise FeatgapError(f"x_adv must have the shape of x {tuple(self.x.shape)}, got "
                                   f"{tuple(x_adv.shape) if torch.is_tensor(x_adv) else type(x_adv).__name__}")
            x_adv = x_adv.float().div(255.0) if x_adv.dtype == torch.uint8 else x_adv
            self.eps_value, self.attack_name = None, "given"
        else:
            if eps is None:
                eps = training_eps(run)
                if eps is None:
                    raise FeatgapError("give eps (the attack radius in [0, 1]) or x_adv: a loaded model has no "
                                       "training ε")
            self.eps_value = check_eps(eps)
            if attack not in ATTACKS:
                raise FeatgapError(f"unknown attack {attack!r}; choose one of: {', '.join(ATTACKS)}")
            self.attack_name = attack
        self.x_adv_given = x_adv
        if isinstance(pgd_steps, bool) or not isinstance(pgd_steps, int) or pgd_steps < 1:
            raise FeatgapError(f"pgd_steps must be a positive integer, got {pgd_steps!r}")
        self.pgd_steps = pgd_steps
        self.layers = LayerReader(self.model, layers).layers  # an unknown layer fails here
        names = (methods,) if isinstance(methods, str) else tuple(methods)
        if not names or any(m not in ATTRIBUTION_METHODS for m in names):
            raise FeatgapError(f"methods must name attribution methods from: {', '.join(ATTRIBUTION_METHODS)}; "
                               f"got {list(names)}")
        if metric not in GAP_METRICS:
            raise FeatgapError(f"unknown gap metric {metric!r}; choose one of: {', '.join(GAP_METRICS)}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise FeatgapError(f"k must be a positive integer, got {k!r}")
        self.k, self.class_names = k, class_names
        self.component_model = None if components is False else component_model(run, device)
        if components and self.component_model is None:
            raise FeatgapError(f"{self.name} has no components(): the component panel needs a model with "
                               "disentangled components, such as an AFD run's student")
        n = len(self.x)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
            raise FeatgapError(f"index must be a sample index in 0..{n - 1}, got {index!r}")

        self.index = widgets.IntSlider(value=int(index), min=0, max=n - 1, description="sample",
                                       continuous_update=False)
        self.index_box = widgets.BoundedIntText(value=int(index), min=0, max=n - 1, layout=widgets.Layout(width="6em"))
        widgets.link((self.index, "value"), (self.index_box, "value"))
        self.method = widgets.Dropdown(options=list(names), value=names[0], description="attribution")
        self.metric = widgets.Dropdown(options=list(GAP_METRICS), value=metric, description="gap")
        controls = [self.index, self.index_box, self.method, self.metric]
        super().__init__(controls, go.FigureWidget())
        self.state = self._measure(int(index))
        start = self._draw()  # the traces, created once; update() rewrites their data
        self.figure_widget.add_traces(list(start.data))
        self.figure_widget.layout = start.layout
        for control in (self.index, self.method, self.metric):
            control.observe(self.refresh, "value")

    # ------------------------------------------------------------ computing
    def _adversarial(self, i: int) -> torch.Tensor:
        if self.x_adv_given is not None:
            return self.x_adv_given[i:i + 1]
        attack = make_attack(self.attack_name, self.eps_value, self.pgd_steps)
        return adversarial_examples(self.model, self.x[i:i + 1], self.y[i:i + 1], attack=attack, seed=0)

    def _measure(self, i: int) -> SampleState:
        """Every probe on sample ``i`` (from memory after the first time)."""

        def compute() -> SampleState:
            x, y = self.x[i:i + 1], self.y[i:i + 1]
            x_adv = self._adversarial(i)
            logits = extract_features(self.model, torch.cat([x, x_adv]), "logits")["logits"]
            comp, heads = None, None
            if self.component_model is not None:
                comp = component_norms(self.component_model, x, y, x_adv)
                heads = head_predictions(self.component_model, x, x_adv)
            return SampleState(index=i, x_adv=x_adv, gap=gap_table(self.model, x, y, x_adv, layers=self.layers),
                               probs=logits.softmax(dim=1),
                               attributions=compare_attributions(self.model, x, y, x_adv,
                                                                 methods=tuple(self.method.options)),
                               components=comp, heads=heads)

        if i in self._cache:
            return self._cache[i]
        with self.busy(f"sample {i}: attack, gap, attributions"):
            return self.cached(i, compute)

    def _title(self) -> str:
        s = self.state
        how = "given x_adv" if self.attack_name == "given" else \
            f"{attack_label(self.attack_name, self.pgd_steps)} at ε = {self.eps_value:.3f}"
        pred_nat, pred_adv = (int(p) for p in s.probs.argmax(1))
        return (f"{self.name}: sample {s.index}, label {self._class(int(self.y[s.index]))} — predicted "
                f"{self._class(pred_nat)} → {self._class(pred_adv)} under {how}")

    def _class(self, c: int) -> str:
        names = self.class_names
        return str(names[c]) if names is not None and c < len(names) else str(c)

    def _draw(self) -> go.Figure:
        s, i = self.state, self.state.index
        return sample_overview(self.x[i], s.x_adv[0], s.probs[0], s.probs[1], s.attributions, s.gap, s.components,
                               method=str(self.method.value), metric=str(self.metric.value), k=self.k,
                               class_names=self.class_names, heads=s.heads, title=self._title())

    # ------------------------------------------------------------ updating
    def update(self) -> None:
        """Compute (or recall) the chosen sample and redraw every panel in place."""
        self.state = self._measure(int(self.index.value))
        copy_figure(self.figure_widget, self._draw())

    def show(self, index: int) -> None:
        """Inspect sample ``index`` of ``x`` (what other views call, e.g. on a click).

        An index outside ``0 … N−1`` is shown in the message line; the figure keeps its sample.
        """
        n = len(self.x)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
            self.show_error(f"no sample {index!r}: this inspector holds samples 0..{n - 1}")
            return
        if int(index) == self.index.value:
            self.refresh()
        else:
            self.index.value = int(index)  # its observer refreshes
