"""GapExplorer: attack a small batch live and watch the feature gap per layer and per sample.

Controls: the attack radius ε (a slider, computed on release), the attack — FGSM (Goodfellow et
al. 2015), PGD-k on the cross-entropy (Madry et al. 2018) or PGD-k on the logit margin
``max_{j≠y} z_j − z_y`` (Carlini & Wagner 2017, which does not saturate when the logits are
huge) — the layer whose samples are drawn, and the gap measure. The figure is
:func:`featgap.plots.gap_overview`: the mean gap of every layer with its 95 % bootstrap
interval, and the per-sample gaps of the chosen layer split by outcome (robust / flipped /
wrong).

Every number comes from the probes: the adversarial examples from
:func:`featgap.probes.adversarial_examples` (seeded, so a setting always gives the same
examples), the gaps from :func:`featgap.probes.gap_table`, the intervals from
:func:`featgap.probes.summarize`. One attack per (ε, attack) is kept in memory; changing the
layer or the measure redraws without attacking again.

>>> view = GapExplorer("runs/demo/pgd_at", x[:200], y[:200])   # ε starts at the run's training ε
>>> view                                                       # in a notebook
>>> view.eps.value = 0.2; view.attack.value = "fgsm"           # or drive it from Python
>>> view.table                                                 # the gap_table behind the figure
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go
import torch
from torch import nn

from featgap import runs
from featgap.attacks import fgsm, margin, pgd
from featgap.errors import FeatgapError
from featgap.plots.gap import gap_overview
from featgap.probes import GAP_METRICS, LayerReader, adversarial_examples, gap_table, summarize
from featgap.probes.adversarial import Attack
from featgap.widgets.base import View, load_model

ATTACKS = ("fgsm", "pgd", "margin")
"""The attacks a GapExplorer offers: FGSM, PGD-k on cross-entropy, PGD-k on the logit margin."""


def make_attack(name: str, eps: float, steps: int = 10) -> Attack:
    """``attack(model, x, y) -> x_adv`` for one of :data:`ATTACKS` at radius ``eps`` (L∞).

    ``"fgsm"``: one signed-gradient step of size ε; ``"pgd"``: PGD-``steps`` on the cross-entropy
    from a random start (the probes' default attack); ``"margin"``: the same on the margin
    ``max_{j≠y} z_j − z_y``.
    """
    if name not in ATTACKS:
        raise FeatgapError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}")
    if name == "fgsm":
        return lambda model, x, y: fgsm(model, x, y, eps=eps)
    if name == "pgd":
        return lambda model, x, y: pgd(model, x, y, eps=eps, steps=steps)
    return lambda model, x, y: pgd(model, x, y, eps=eps, steps=steps, objective=margin)


def attack_label(name: str, steps: int) -> str:
    """How an attack reads in a dropdown: ``FGSM``, ``PGD-10``, ``PGD-10 (margin)``."""
    return {"fgsm": "FGSM", "pgd": f"PGD-{steps}", "margin": f"PGD-{steps} (margin)"}[name]


def training_eps(run: str | Path | nn.Module) -> float | None:
    """The ε a run was trained at (its ``config.json``), or ``None`` for a loaded model."""
    if isinstance(run, nn.Module):
        return None
    return float(runs.read_config(run)["config"]["eps"])


def check_eps(value: object, name: str = "eps") -> float:
    """``value`` as a float in [0, 1] (pixel units), else a one-line :class:`FeatgapError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise FeatgapError(f"{name} must be a number in [0, 1] (pixel units, e.g. 0.3 or 8/255); got {value!r}")
    return float(value)


def check_batch(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` as tensors: ``x`` a non-empty image batch ``(N, C, H, W)``, ``y`` one label per image."""
    if not torch.is_tensor(x) or x.ndim != 4:
        raise FeatgapError(f"x must be a tensor of images (N, C, H, W), got "
                           f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if len(x) == 0:
        raise FeatgapError("x is empty: give at least one image")
    y = torch.as_tensor(y)
    if y.shape != (len(x),):
        raise FeatgapError(f"y must hold one label per image ({len(x)}), got shape {tuple(y.shape)}")
    return x, y.long()


def copy_figure(widget: go.FigureWidget, fig: go.Figure) -> None:
    """Write ``fig``'s trace data and layout (titles, axes) into ``widget``'s existing traces, in one update.

    ``fig`` must have the same traces in the same order (the plots functions keep that fixed), so
    nothing is removed or added: the widget redraws in place, without flicker.
    """
    if len(widget.data) != len(fig.data):
        raise FeatgapError(f"internal: the new figure has {len(fig.data)} traces, the widget {len(widget.data)}")
    with widget.batch_update():
        for old, new in zip(widget.data, fig.data):
            props = new.to_plotly_json()
            props.pop("type", None)
            old.update(props, overwrite=True)
        layout = fig.layout.to_plotly_json()
        layout.pop("template", None)  # unchanged, and large
        widget.layout.update(layout, overwrite=True)


class GapExplorer(View):
    """ε slider, attack and layer choice → the feature gap per layer (with 95 % CIs) and per sample by outcome.

    Arguments:
        run (str | Path | nn.Module): a run directory (its exported model) or a loaded model.
        x (Tensor): a small batch of natural images ``(N, C, H, W)`` in [0, 1] (or uint8).
        y (Tensor): their labels ``(N,)``.
        layers (list[str] | None): the layers probed. (Default: the model's ``layer_names``)
        eps (float | None): the starting radius, in [0, 1]. (Default: the run's training ε from
            its ``config.json``; required for a loaded model)
        eps_max (float | None): the slider's end, in [0, 1]. (Default: ``min(1, 2·eps)``, or 1 at ε = 0)
        attacks (list[str]): the attack choices, from :data:`ATTACKS`. (Default: FGSM, PGD-k, margin PGD-k)
        attack (str | None): the attack selected first. (Default: ``"pgd"`` when offered, else the first)
        pgd_steps (int): k of the PGD attacks. (Default: 10)
        metric (str): the starting gap measure, from :data:`featgap.probes.GAP_METRICS`. (Default: ``"l2"``)
        layer (str | None): the starting layer of the distribution. (Default: the last probed)
        n_boot (int): bootstrap resamples of the intervals. (Default: 1000)
        device (str): where the model runs. (Default: ``"cpu"``)

    Attributes:
        eps, attack, layer, metric: the controls (``FloatSlider``, ``Dropdown`` s).
        table (DataFrame): the :func:`~featgap.probes.gap_table` of the current (ε, attack).
        summary (DataFrame): its :func:`~featgap.probes.summarize` by layer.
        x_adv (Tensor): the current adversarial examples.

    A run that does not exist, a layer the model lacks, an ε outside [0, 1] or an unknown attack
    is a one-line :class:`FeatgapError` at construction.

    Examples::
        >>> view = GapExplorer("runs/demo/pgd_at", x[:100], y[:100], attacks=("pgd", "fgsm"))
        >>> view.figure().write_html("gap.html")
    """

    def __init__(self, run: str | Path | nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 layers: Sequence[str] | None = None, eps: float | None = None, eps_max: float | None = None,
                 attacks: Sequence[str] = ATTACKS, attack: str | None = None, pgd_steps: int = 10, metric: str = "l2",
                 layer: str | None = None, n_boot: int = 1000, device: str = "cpu") -> None:
        self.name, self.model = load_model(run, device)
        self.x, self.y = check_batch(x, y)
        if eps is None:
            eps = training_eps(run)
            if eps is None:
                raise FeatgapError("give eps (the attack radius in [0, 1]): a loaded model has no training ε")
        eps = check_eps(eps)
        eps_max = check_eps(eps_max, "eps_max") if eps_max is not None else (min(1.0, 2 * eps) if eps > 0 else 1.0)
        if eps > eps_max:
            raise FeatgapError(f"eps {eps} is above eps_max {eps_max}")
        attacks = (attacks,) if isinstance(attacks, str) else tuple(attacks)
        if not attacks:
            raise FeatgapError(f"attacks is empty: choose from {', '.join(ATTACKS)}")
        for a in attacks:
            if a not in ATTACKS:
                raise FeatgapError(f"unknown attack {a!r}; choose from: {', '.join(ATTACKS)}")
        attack = attack if attack is not None else ("pgd" if "pgd" in attacks else attacks[0])
        if attack not in attacks:
            raise FeatgapError(f"attack {attack!r} is not among the offered attacks: {', '.join(attacks)}")
        if isinstance(pgd_steps, bool) or not isinstance(pgd_steps, int) or pgd_steps < 1:
            raise FeatgapError(f"pgd_steps must be a positive integer, got {pgd_steps!r}")
        if metric not in GAP_METRICS:
            raise FeatgapError(f"unknown gap metric {metric!r}; choose one of: {', '.join(GAP_METRICS)}")
        self.layers = LayerReader(self.model, layers).layers  # an unknown layer fails here, before any attack
        if layer is not None and layer not in self.layers:
            raise FeatgapError(f"layer {layer!r} is not among the probed layers: {', '.join(self.layers)}")
        self.pgd_steps, self.n_boot = pgd_steps, n_boot

        self.eps = widgets.FloatSlider(value=eps, min=0.0, max=eps_max, step=eps_max / 100, description="ε",
                                       readout_format=".3f", continuous_update=False)
        self.attack = widgets.Dropdown(options=[(attack_label(a, pgd_steps), a) for a in attacks], value=attack,
                                       description="attack")
        self.layer = widgets.Dropdown(options=list(self.layers), value=layer or self.layers[-1], description="layer")
        self.metric = widgets.Dropdown(options=list(GAP_METRICS), value=metric, description="gap")

        super().__init__([self.eps, self.attack, self.layer, self.metric], go.FigureWidget())
        self.table, self.summary, self.x_adv = self._measure()
        start = self._draw()  # the traces, created once; update() rewrites their data
        self.figure_widget.add_traces(list(start.data))
        self.figure_widget.layout = start.layout
        for control in (self.eps, self.attack, self.layer, self.metric):
            control.observe(self.refresh, "value")

    # ------------------------------------------------------------ computing
    def _measure(self) -> tuple[pd.DataFrame, pd.DataFrame, torch.Tensor]:
        """``(gap_table, summary, x_adv)`` of the current ε and attack, from memory when seen before."""
        eps, attack = float(self.eps.value), str(self.attack.value)

        def compute() -> tuple[pd.DataFrame, pd.DataFrame, torch.Tensor]:
            x_adv = adversarial_examples(self.model, self.x, self.y, attack=make_attack(attack, eps, self.pgd_steps),
                                         seed=0)
            table = gap_table(self.model, self.x, self.y, x_adv, layers=self.layers)
            return table, summarize(table, n_boot=self.n_boot), x_adv

        key = (round(eps, 9), attack)
        if key in self._cache:
            return self._cache[key]
        with self.busy(f"{attack_label(attack, self.pgd_steps)} at ε = {eps:.3f} on {len(self.x)} images"):
            return self.cached(key, compute)

    def _draw(self) -> go.Figure:
        acc = float(self.table.drop_duplicates("sample")["adv_correct"].mean())
        title = (f"{self.name}: {attack_label(str(self.attack.value), self.pgd_steps)} at ε = {self.eps.value:.3f} "
                 f"— robust accuracy {acc:.0%} of {len(self.x)}")
        return gap_overview(self.summary, self.table, str(self.metric.value), str(self.layer.value), title=title)

    # ------------------------------------------------------------ updating
    def update(self) -> None:
        """Attack (or recall) the current (ε, attack) and redraw bars and distribution in place."""
        self.table, self.summary, self.x_adv = self._measure()
        copy_figure(self.figure_widget, self._draw())
