"""Attribution maps: which pixels a classifier's decision rests on — for natural inputs and for
their adversarial examples, side by side.

An *attribution map* ``A(x)`` has the shape of the input and scores every pixel (and channel)
by how much it contributes to one output, here the **logit** ``f_t`` of a target class ``t``.
Three gradient methods are offered (computed with Captum, model in eval mode):

* ``"saliency"`` (Simonyan et al. 2014) — the size of the gradient::

      A(x) = |∂f_t/∂x|

  How sensitive the logit is to each pixel *right here*; never negative, and blind to whether
  the pixel is lit at all.
* ``"input_x_gradient"`` — gradient times input::

      A(x) = x ⊙ ∂f_t/∂x

  A first-order estimate of each pixel's contribution, signed (+ supports class ``t``).
* ``"integrated_gradients"`` (Sundararajan et al. 2017, arXiv 1703.01365) — the gradient averaged
  along the straight path from a baseline ``x̄`` (default: a black image) to ``x``::

      A(x) = (x − x̄) ⊙ ∫₀¹ ∂f_t/∂x (x̄ + α (x − x̄)) dα

  approximated with ``n_steps`` Gauss–Legendre points. Its defining property is *completeness*:
  ``Σ A(x) = f_t(x) − f_t(x̄)``, so the map splits the logit's change exactly among the pixels.
  For a linear model ``f(x) = Wx + b`` all three reduce to hand-computable maps: ``|W_t|``,
  ``x ⊙ W_t`` and ``(x − x̄) ⊙ W_t``.

**The side-by-side comparison.** :func:`compare_attributions` computes the maps of a natural
image ``x`` and of its adversarial example ``x'`` *for the same class* ``t`` (the true label by
default), so both maps answer the same question — "what is the evidence for ``t``?" — and
measures per sample how much the answer changed. For a standard network a small attack can move
the map a lot — the explanation is as fragile as the prediction, which is the feature gap seen at
the input; adversarially trained models tend to keep their maps in place (and their gradients
look more like the object to a human, Tsipras et al. 2019). Measure it rather than assume it.
Four measures, by :func:`compare_maps`:

* ``cosine``  — ``1 − cos(A, A')`` of the flattened signed maps: 0 same direction, 1 unrelated,
  2 sign-flipped (the evidence for ``t`` became evidence against it);
* ``l2``      — ``‖A/‖A‖₁ − A'/‖A'‖₁‖₂``: the signed maps each scaled to unit L1 mass, so only
  the *distribution* of attribution counts, not the logit's size (which an attack changes a
  lot); 0 for positive multiples, at most 2;
* ``topk_overlap`` — the share of the top ``topk`` (default 10 %) most important pixels of the
  natural map that are also among the top pixels of the adversarial map; 1 same places, 0
  disjoint. Importance is the :func:`heatmap` value, ``Σ_c |A_c|`` per pixel (ties broken in
  pixel order);
* ``spearman`` — Spearman rank correlation of the two heatmaps over all pixels (tied values
  get their average rank): 1 the same ranking of pixels, 0 unrelated.

``cosine`` and ``l2`` are *distances* (0 = unchanged); ``topk_overlap`` and ``spearman`` are
*similarities* (1 = unchanged). The first two use the signed, per-channel maps; the last two ask
only *where* the attribution sits, per pixel. Degenerate maps are pinned: a zero map has cosine
distance 1 to anything (as in :func:`~featgap.probes.pairwise_gap`), and a constant heatmap has
Spearman correlation 0.

Typical use::

    cmp = compare_attributions(model, x, y, eps=0.3)         # PGD-10 examples, target = true labels
    cmp.table                                                 # one row per sample × method
    cmp.mean().loc["integrated_gradients", "topk_overlap"]    # 1: same top pixels, 0: none shared
    cmp.mean(cmp.pred_adv != y)                               # only the samples the attack fooled
    cmp.heatmap("saliency", "adversarial")                   # (N, H, W), ready for imshow

:func:`attribute`, :func:`compare_maps`, :func:`heatmap`, :func:`spearman` and
:func:`topk_overlap` are tensor-level helpers (maps in, tensors out);
:func:`compare_attributions` is the probe (model and images in, a table out).

Pure computation: nothing here draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from featgap.attacks import eval_mode
from featgap.errors import FeatgapError
from featgap.probes.adversarial import Attack, with_adversarial
from featgap.probes.extract import as_float_images, model_device
from featgap.probes.feature_gap import pairwise_gap
from featgap.probes.frames import concat, frame

ATTRIBUTION_METHODS = ("integrated_gradients", "saliency", "input_x_gradient")
ATTRIBUTION_DISTANCES = ("cosine", "l2", "topk_overlap", "spearman")
TARGET_RULES = ("label", "pred", "adv_pred")

Target = int | Sequence[int] | torch.Tensor


# ----------------------------------------------------------------------------- input checks

def _check_method(method: str) -> None:
    if method not in ATTRIBUTION_METHODS:
        raise FeatgapError(f"unknown attribution method {method!r}; choose one of: {', '.join(ATTRIBUTION_METHODS)}")


def _check_images(x: object, name: str = "x") -> torch.Tensor:
    if not torch.is_tensor(x):
        raise FeatgapError(f"{name} must be a tensor of images (N, C, H, W), got {type(x).__name__}")
    if x.ndim < 2:
        raise FeatgapError(f"{name} must be a batch (N, ...) of inputs, got shape {tuple(x.shape)}")
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise FeatgapError(f"{name} must hold float pixels in [0, 1] (or uint8), got {x.dtype}")
    return as_float_images(x.detach()).float()


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    """The width of the model's output, read from one forward pass on one input."""
    with torch.no_grad(), eval_mode(model):
        out = model(x[:1].to(model_device(model)))
    if not torch.is_tensor(out) or out.ndim != 2:
        raise FeatgapError(f"attribution needs a model that returns (N, classes) logits, got "
                           f"{tuple(out.shape) if torch.is_tensor(out) else type(out).__name__}")
    return int(out.shape[1])


def _targets(target: Target, n: int, num_classes: int, name: str = "target", per_sample: bool = False
             ) -> torch.Tensor:
    """``target`` as an int64 ``(n,)`` CPU tensor of class indices, checked against the model.

    One index (an int or a one-element tensor) stands for every sample unless ``per_sample``.
    """
    if isinstance(target, (bool, str)) or target is None:
        raise FeatgapError(f"{name} must be class indices (one per sample), got {target!r}")
    try:
        t = torch.as_tensor(target).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise FeatgapError(f"{name} must be class indices (one per sample), got {type(target).__name__}") from None
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise FeatgapError(f"{name} must hold integer class indices, got {t.dtype}")
    t = t.long()
    if not per_sample and t.numel() == 1 and t.ndim <= 1:
        t = t.reshape(1).expand(n)
    if t.shape != (n,):
        raise FeatgapError(f"{name} needs one class per sample ({n}), got shape {tuple(t.shape)}")
    if n and (t.min() < 0 or t.max() >= num_classes):
        raise FeatgapError(f"{name} class out of range: the model has {num_classes} classes "
                           f"(0..{num_classes - 1}), got {int(t.min())}..{int(t.max())}")
    return t.contiguous()


def _baseline(baseline: float | torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | float:
    """Zeros (a black image), a constant, or a tensor of ``x``'s shape or of one input's shape."""
    if baseline is None:
        return 0.0
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return float(baseline)
    if not torch.is_tensor(baseline):
        raise FeatgapError(f"baseline must be None, a number or a tensor, got {type(baseline).__name__}")
    b = as_float_images(baseline.detach()).float()
    if tuple(b.shape) == tuple(x.shape[1:]):
        b = b.unsqueeze(0).expand_as(x)
    if b.shape != x.shape:
        raise FeatgapError(f"baseline shape {tuple(baseline.shape)} fits neither x {tuple(x.shape)} "
                           f"nor one input {tuple(x.shape[1:])}")
    return b


def _check_counts(n_steps: int, batch_size: int) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise FeatgapError(f"n_steps must be a positive integer, got {n_steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FeatgapError(f"batch_size must be a positive integer, got {batch_size!r}")


# ----------------------------------------------------------------------------- attribution

def _explainer(method: str, model: nn.Module):  # noqa: ANN202 - a Captum attribution object
    """The Captum object for ``method`` (imported here: Captum is slow to import)."""
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    return {"integrated_gradients": IntegratedGradients, "saliency": Saliency,
            "input_x_gradient": InputXGradient}[method](model)


def attribute(model: nn.Module, x: torch.Tensor, target: Target, *, method: str = "integrated_gradients",
              baseline: float | torch.Tensor | None = None, n_steps: int = 32, batch_size: int = 64
              ) -> torch.Tensor:
    """Attribution maps of ``target``'s logit for each input (Captum; a tensor-level helper).

    ``"saliency"`` (Simonyan et al. 2014): ``|∂f_t/∂x|``; ``"input_x_gradient"``:
    ``x ⊙ ∂f_t/∂x``; ``"integrated_gradients"`` (Sundararajan et al. 2017, arXiv 1703.01365):
    ``(x − x̄) ⊙ ∫₀¹ ∂f_t/∂x(x̄ + α(x − x̄)) dα`` with ``n_steps`` Gauss–Legendre points. The
    model runs in eval mode (each module's mode is restored afterwards) on its own device;
    gradients are taken with respect to the input only, so no parameter's ``.grad`` changes.

    Arguments:
        model (nn.Module): maps images in [0, 1] to ``(N, classes)`` logits.
        x (Tensor): inputs in [0, 1]; uint8 images are scaled.
        target (int | list[int] | Tensor): the class to explain — one index for all, or one per sample.
        method (str): one of :data:`ATTRIBUTION_METHODS`. (Default: ``"integrated_gradients"``)
        baseline (float | Tensor | None): integrated gradients only — the reference input ``x̄``:
            ``None`` (zeros, a black image), a number (a constant image), or a tensor shaped
            like ``x`` or like one input. (Default: None)
        n_steps (int): integration points of integrated gradients. (Default: 32)
        batch_size (int): at most this many images — interpolation points, for integrated
            gradients — go through the model at once. (Default: 64)

    Shape:
        - x: ``(N, C, H, W)`` (any ``(N, …)``). target: ``()`` or ``(N,)``.
        - output: float32 CPU maps shaped like ``x``.

    Examples::
        >>> maps = attribute(model, x, y, method="saliency")
        >>> heatmap(maps).shape            # (N, H, W), ready for imshow
    """
    _check_method(method)
    x = _check_images(x)
    _check_counts(n_steps, batch_size)
    if baseline is not None and method != "integrated_gradients":
        raise FeatgapError(f"baseline applies to integrated_gradients only, not to {method}")
    if len(x) == 0:
        return torch.zeros(x.shape, dtype=torch.float32)
    t = _targets(target, len(x), _num_classes(model, x))
    base = _baseline(baseline, x)
    return _attribute(model, x, t, method, base, n_steps, batch_size)


def _attribute(model: nn.Module, x: torch.Tensor, t: torch.Tensor, method: str, base: torch.Tensor | float,
               n_steps: int, batch_size: int) -> torch.Tensor:
    """:func:`attribute` after its checks: batched, on the model's device, back on the CPU."""
    device = model_device(model)
    explainer = _explainer(method, model)
    # integrated gradients evaluates n_steps points per sample: keep batch_size points per pass
    chunk = max(1, batch_size // n_steps) if method == "integrated_gradients" else batch_size
    parts: list[torch.Tensor] = []
    with eval_mode(model), torch.enable_grad():
        for i in range(0, len(x), chunk):
            # a fresh leaf that requires grad: Captum differentiates with respect to it (and only it)
            xb = x[i:i + chunk].to(device).float().detach().requires_grad_(True)
            tb = t[i:i + chunk].to(device)
            if method == "integrated_gradients":
                bb = base[i:i + chunk].to(device) if torch.is_tensor(base) else base
                a = explainer.attribute(xb, baselines=bb, target=tb, n_steps=n_steps, method="gausslegendre",
                                        internal_batch_size=batch_size)
            elif method == "saliency":
                a = explainer.attribute(xb, target=tb, abs=True)
            else:
                a = explainer.attribute(xb, target=tb)
            parts.append(a.detach().float().cpu())
    return torch.cat(parts)


# ----------------------------------------------------------------------------- comparing maps

def heatmap(maps: torch.Tensor) -> torch.Tensor:
    """Per-pixel importance for display: ``Σ_c |A_c|`` turns ``(N, C, H, W)`` maps into ``(N, H, W)``."""
    if not torch.is_tensor(maps) or maps.ndim != 4:
        raise FeatgapError(f"heatmap needs (N, C, H, W) maps, got "
                           f"{tuple(maps.shape) if torch.is_tensor(maps) else type(maps).__name__}")
    return maps.abs().sum(dim=1)


def _importance(maps: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` per-pixel importance: the heatmap for image maps, ``|A|`` for any other shape."""
    return heatmap(maps).flatten(1) if maps.ndim == 4 else maps.abs().flatten(1)


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..P along dim 1 of ``(N, P)`` values, tied values sharing their average rank (float64)."""
    n, p = v.shape
    sorted_v, order = v.sort(dim=1, stable=True)
    starts = torch.ones_like(sorted_v, dtype=torch.bool)
    starts[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    group = starts.long().cumsum(dim=1) - 1
    position = torch.arange(1, p + 1, dtype=torch.float64).expand(n, p)
    total = torch.zeros(n, p, dtype=torch.float64).scatter_add_(1, group, position)
    count = torch.zeros(n, p, dtype=torch.float64).scatter_add_(1, group, torch.ones_like(position))
    mean_rank = total.gather(1, group) / count.gather(1, group)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Spearman rank correlation of two ``(N, P)`` batches (average ranks for ties; 0 if a row is constant)."""
    ra, rb = _average_ranks(a.double()), _average_ranks(b.double())
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denom = ra.norm(dim=1) * rb.norm(dim=1)
    rho = (ra * rb).sum(dim=1) / denom.clamp_min(1e-300)
    return torch.where(denom > 0, rho.clamp(-1.0, 1.0), torch.zeros_like(rho)).float()


def topk_overlap(a: torch.Tensor, b: torch.Tensor, topk: float = 0.1) -> torch.Tensor:
    """Per row of two ``(N, P)`` importance batches: share of the ``ceil(topk·P)`` largest entries in common.

    Ties are broken in index order (a stable sort), so equal maps always overlap fully.
    """
    k = max(1, math.ceil(topk * a.shape[1] - 1e-9))
    top_a = a.sort(dim=1, descending=True, stable=True).indices[:, :k]
    top_b = b.sort(dim=1, descending=True, stable=True).indices[:, :k]
    in_a = torch.zeros(a.shape, dtype=torch.bool).scatter_(1, top_a, True)
    in_b = torch.zeros(b.shape, dtype=torch.bool).scatter_(1, top_b, True)
    return (in_a & in_b).sum(dim=1).float() / k


def compare_maps(a: torch.Tensor, b: torch.Tensor, topk: float = 0.1) -> dict[str, torch.Tensor]:
    """Per-sample ``cosine``, ``l2``, ``topk_overlap`` and ``spearman`` between two batches of maps.

    ``cosine = 1 − cos(A, A')`` and ``l2 = ‖A/‖A‖₁ − A'/‖A'‖₁‖₂`` on the signed maps;
    ``topk_overlap`` (:func:`topk_overlap`) and ``spearman`` (:func:`spearman`) on the per-pixel
    importance (:func:`heatmap` for image maps). See the module docstring for the details; a
    tensor-level helper.

    Arguments:
        a, b (Tensor): two batches of maps of one shape.
        topk (float): fraction of pixels for ``topk_overlap``. (Default: 0.1)

    Shape:
        - a, b: ``(N, C, H, W)`` (or any ``(N, …)``).
        - output: ``{"cosine", "l2", "topk_overlap", "spearman"}`` → float32 tensors ``(N,)``.

    Examples::
        >>> d = compare_maps(attribute(model, x, y), attribute(model, x_adv, y))
        >>> d["topk_overlap"].mean()
    """
    if not torch.is_tensor(a) or not torch.is_tensor(b) or a.shape != b.shape or a.ndim < 2:
        raise FeatgapError(f"compare_maps needs two (N, ...) map batches of one shape, got "
                           f"{tuple(getattr(a, 'shape', ()))} and {tuple(getattr(b, 'shape', ()))}")
    if not 0.0 < topk <= 1.0:
        raise FeatgapError(f"topk is a fraction of the pixels in (0, 1], got {topk}")
    a, b = a.detach().cpu().float(), b.detach().cpu().float()
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    ua = fa / fa.abs().sum(dim=1, keepdim=True).clamp_min(1e-300)
    ub = fb / fb.abs().sum(dim=1, keepdim=True).clamp_min(1e-300)
    ia, ib = _importance(a), _importance(b)
    return {"cosine": pairwise_gap(a, b)["cosine"], "l2": (ua - ub).norm(dim=1).float(),
            "topk_overlap": topk_overlap(ia, ib, topk), "spearman": spearman(ia, ib)}


# ----------------------------------------------------------------------------- natural vs adversarial

@dataclass
class AttributionComparison:
    """Attribution maps of natural and adversarial inputs for the same classes, and how far apart they lie.

    Attributes:
        table (DataFrame): one row per sample × method, methods in order, with the columns
            ``sample, label`` (when labels were given) ``, target, nat_pred, adv_pred, method,
            cosine, l2, topk_overlap, spearman`` (:data:`ATTRIBUTION_DISTANCES`; see
            :data:`~featgap.probes.COLUMNS`).
        natural, adversarial (dict[str, Tensor]): per method, float32 CPU maps shaped like the inputs.
        methods (tuple[str, ...]): the methods compared.
        target (Tensor): ``(N,)`` the class explained for each sample, chosen by ``target_rule``
            (``"label"``, ``"pred"``, ``"adv_pred"`` or ``"given"``).
        pred_nat, pred_adv (Tensor): ``(N,)`` the model's predictions. labels (Tensor | None): the
            true labels when they were given. topk (float): the fraction used for ``topk_overlap``.
    """

    methods: tuple[str, ...]
    target: torch.Tensor
    target_rule: str
    natural: dict[str, torch.Tensor]
    adversarial: dict[str, torch.Tensor]
    table: pd.DataFrame
    pred_nat: torch.Tensor
    pred_adv: torch.Tensor
    labels: torch.Tensor | None = None
    topk: float = 0.1

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def distances(self, method: str) -> dict[str, torch.Tensor]:
        """The four measures of one method as float32 tensors ``(N,)``, in sample order."""
        self._check(method)
        rows = self.table[self.table["method"] == method]
        return {k: torch.from_numpy(rows[k].to_numpy().copy()) for k in ATTRIBUTION_DISTANCES}

    def heatmap(self, method: str, which: str = "natural") -> torch.Tensor:
        """``(N, H, W)`` per-pixel maps (``Σ_c |A_c|``) of ``which`` = ``"natural"`` or ``"adversarial"``."""
        self._check(method)
        if which not in ("natural", "adversarial"):
            raise FeatgapError(f"which must be 'natural' or 'adversarial', got {which!r}")
        return heatmap((self.natural if which == "natural" else self.adversarial)[method])

    def mean(self, mask: torch.Tensor | None = None) -> pd.DataFrame:
        """Mean of every measure per method (rows, in order), over all samples or where the boolean ``mask`` is set."""
        out = {}
        for method in self.methods:
            d = self.distances(method)
            out[method] = {k: float((v if mask is None else v[mask]).mean()) for k, v in d.items()}
        return pd.DataFrame.from_dict(out, orient="index").rename_axis("method")

    def _check(self, method: str) -> None:
        if method not in self.methods:
            raise FeatgapError(f"no {method!r} maps in this comparison; it holds: {', '.join(self.methods)}")


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = model_device(model)
    preds = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(x), batch_size):
            preds.append(model(x[i:i + batch_size].to(device)).argmax(dim=1).cpu())
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def compare_attributions(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, x_adv: torch.Tensor | None = None,
                         *, methods: str | Sequence[str] = ATTRIBUTION_METHODS, target: str | Target = "label",
                         eps: float | None = None, steps: int = 10, norm: str = "linf", attack: Attack | None = None,
                         seed: int | None = 0, baseline: float | torch.Tensor | None = None, n_steps: int = 32,
                         batch_size: int = 64, topk: float = 0.1) -> AttributionComparison:
    """Attribution maps of natural and adversarial inputs for the same class, compared per sample.

    Computes, for each method, the maps ``A = A_t(x)`` and ``A' = A_t(x_adv)`` of the *same*
    class ``t`` — both answer "where is the evidence for ``t``?" — and four per-sample measures
    of how much the answer changed (:func:`compare_maps`)::

        cosine = 1 − cos(A, A')            l2 = ‖A/‖A‖₁ − A'/‖A'‖₁‖₂
        topk_overlap = |top_k(A) ∩ top_k(A')| / k        spearman = ρ(heatmap(A), heatmap(A'))

    Methods: saliency (Simonyan et al. 2014), input × gradient, integrated gradients
    (Sundararajan et al. 2017, arXiv 1703.01365), computed with Captum.

    Arguments:
        model (nn.Module): maps images in [0, 1] to ``(N, classes)`` logits.
        x (Tensor): natural inputs. y (Tensor | None): true labels; needed for ``target="label"``
            and for the attack, then kept as ``labels``.
        x_adv (Tensor | None): adversarial examples; made with PGD at ``eps`` when ``None``.
        methods (str | list[str]): one or several of :data:`ATTRIBUTION_METHODS`. (Default: all)
        target (str | int | Tensor): the class explained in *both* maps of a sample — ``"label"``
            (the true class), ``"pred"`` (the model's class for ``x``), ``"adv_pred"`` (the class
            the attack pushed the model to) or explicit class indices. (Default: ``"label"``)
        eps, steps, norm, attack, seed: the attack (see :func:`adversarial_examples`).
        baseline: integrated gradients' reference input (default: a black image), see :func:`attribute`.
        n_steps, batch_size: as for :func:`attribute`. topk (float): fraction of pixels for
            ``topk_overlap``. (Default: 0.1)

    Shape:
        - x, x_adv: ``(N, C, H, W)``. y: ``(N,)``.
        - output: :class:`AttributionComparison`; its ``table`` has ``N × len(methods)`` rows.

    Examples::
        >>> cmp = compare_attributions(model, x, y, eps=0.3)
        >>> cmp.table.groupby(["method", cmp.table.adv_pred != cmp.table.label])["topk_overlap"].mean()
    """
    names = (methods,) if isinstance(methods, str) else tuple(methods)
    if not names:
        raise FeatgapError("methods is empty: name at least one of " + ", ".join(ATTRIBUTION_METHODS))
    if len(set(names)) != len(names):
        raise FeatgapError(f"methods lists a method twice: {list(names)}")
    for m in names:
        _check_method(m)
    x = _check_images(x, "x")
    if x_adv is None:
        x_adv = with_adversarial(model, x, y, None, eps=eps, steps=steps, norm=norm, attack=attack,
                                 batch_size=batch_size, seed=seed)
    x_adv = _check_images(x_adv, "x_adv")
    if x.shape != x_adv.shape:
        raise FeatgapError(f"x and x_adv must have one shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    _check_counts(n_steps, batch_size)
    if not isinstance(topk, (int, float)) or not 0.0 < topk <= 1.0:
        raise FeatgapError(f"topk is a fraction of the pixels in (0, 1], got {topk!r}")
    n = len(x)
    if n == 0:
        raise FeatgapError("x is empty: compare at least one input")
    num_classes = _num_classes(model, x)
    labels = None if y is None else _targets(y, n, num_classes, name="y", per_sample=True)
    pred_nat, pred_adv = _predict(model, x, batch_size), _predict(model, x_adv, batch_size)
    if isinstance(target, str):
        if target not in TARGET_RULES:
            raise FeatgapError(f"unknown target rule {target!r}; choose one of: {', '.join(TARGET_RULES)}, "
                               "or pass class indices")
        if target == "label" and labels is None:
            raise FeatgapError("target='label' needs the true labels: pass y, or use target='pred'")
        t, rule = {"label": labels, "pred": pred_nat, "adv_pred": pred_adv}[target], target
    else:
        t, rule = _targets(target, n, num_classes), "given"
    base = _baseline(baseline, x)
    natural, adversarial, parts = {}, {}, []
    for m in names:
        b = base if m == "integrated_gradients" else 0.0
        natural[m] = _attribute(model, x, t, m, b, n_steps, batch_size)
        adversarial[m] = _attribute(model, x_adv, t, m, b, n_steps, batch_size)
        parts.append(frame({"sample": np.arange(n), **({"label": labels} if labels is not None else {}),
                            "target": t, "nat_pred": pred_nat, "adv_pred": pred_adv,
                            "method": np.full(n, m, dtype=object),
                            **compare_maps(natural[m], adversarial[m], topk)}))
    return AttributionComparison(methods=names, target=t.clone(), target_rule=rule, natural=natural,
                                 adversarial=adversarial, table=concat(parts), pred_nat=pred_nat, pred_adv=pred_adv,
                                 labels=labels, topk=float(topk))
