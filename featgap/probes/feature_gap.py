"""Feature gap: how far apart a model's features of a natural input and of its adversarial
example lie.

For pooled feature vectors ``f = f(x)`` and ``f' = f(x')`` of one sample::

    l2      = ‖f − f'‖₂
    linf    = max_i |f_i − f'_i|          (the AFD paper's measure)
    cosine  = 1 − f·f' / (‖f‖ ‖f'‖)
    rel_l2  = ‖f − f'‖₂ / ‖f‖₂

A robust model keeps these small: the attack moves the input, but not what the model "sees".

:func:`gap_table` measures them at several layers at once and returns a tidy
``pandas.DataFrame`` with one row per (sample, layer)::

    df = gap_table(model, x, y, eps=0.3)                 # PGD-10 by default
    df = gap_table(model, x, y, x_adv=my_adversarials)   # or bring your own attack's output

with the columns ``sample, label, layer, l2, linf, cosine, rel_l2, nat_pred, adv_pred,
nat_correct, adv_correct, outcome`` (:data:`~featgap.probes.COLUMNS`). ``outcome`` sorts each
sample into one of three groups:

* ``robust``  — classified correctly before and after the attack;
* ``flipped`` — correct on the natural input, wrong on the adversarial one;
* ``wrong``   — already misclassified on the natural input.

Comparing the gap of ``flipped`` and ``robust`` samples (:func:`~featgap.probes.summarize`)
asks whether the attack succeeded *because* the features moved.

Two tensor-level helpers sit underneath, for code that needs tensors rather than a table
(training loops, evaluation): :func:`pairwise_gap` on two feature batches, and
:func:`feature_gap` on a model's pooled features ``model.features``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from featgap.attacks import eval_mode
from featgap.errors import FeatgapError
from featgap.probes.adversarial import Attack, with_adversarial
from featgap.probes.extract import LOGITS, LayerReader, extract_features
from featgap.probes.frames import concat, frame
from featgap.progress import progress

OUTCOMES = ("robust", "flipped", "wrong")

GAP_METRICS = ("l2", "linf", "cosine", "rel_l2")


def pairwise_gap(f_nat: torch.Tensor, f_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four feature-gap measures between two batches of features, per row.

    ``l2 = ‖a − b‖₂``, ``linf = max_i |a_i − b_i|``, ``cosine = 1 − cos(a, b)`` and
    ``rel_l2 = ‖a − b‖₂ / ‖a‖₂`` for each row ``a`` of ``f_nat`` and ``b`` of ``f_adv``. A metric
    helper on tensors (no model, no table). Degenerate rows are pinned: ``cosine`` is clamped to
    [0, 2] and exactly 0 for identical non-zero rows, 1 when a row is zero; ``rel_l2`` divides by
    ``max(‖a‖, 1e-12)``.

    Arguments:
        f_nat (Tensor): natural features ``(N, D)`` (any ``(N, …)`` is flattened per row).
        f_adv (Tensor): adversarial features, same shape.

    Shape:
        - output: ``{"l2", "linf", "cosine", "rel_l2"}`` → float32 tensors ``(N,)``.

    Examples::
        >>> gap = pairwise_gap(model.features(x), model.features(x_adv))
        >>> gap["l2"].mean()
    """
    a = f_nat.flatten(1).float()
    b = f_adv.flatten(1).float()
    diff = a - b
    l2 = diff.norm(dim=1)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12)
    # 1 − cos in float32 can come out a hair below 0 or above 0 for identical vectors: clamp to
    # [0, 2] and make identical non-zero vectors exactly 0 (a zero vector keeps distance 1).
    cosine = (1.0 - cos).clamp(0.0, 2.0)
    cosine = torch.where((l2 == 0) & (a.norm(dim=1) > 0), torch.zeros_like(cosine), cosine)
    return {"l2": l2, "linf": diff.abs().amax(dim=1), "cosine": cosine,
            "rel_l2": l2 / a.norm(dim=1).clamp_min(1e-12)}


def feature_gap(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, *, batch_size: int = 500
                ) -> dict[str, torch.Tensor]:
    """:func:`pairwise_gap` of ``model.features`` of natural and adversarial images, as tensors.

    The tensor-level form of :func:`gap_table` at the pooled feature layer, for training loops
    and evaluation: no table, no labels, no attack. Runs without gradients, in eval mode
    (restored afterwards), in batches of ``batch_size`` on the inputs' device.

    Arguments:
        model (nn.Module): a featgap model (anything with ``features(x) -> (N, D)``).
        x (Tensor): natural images ``(N, C, H, W)`` in [0, 1].
        x_adv (Tensor): their adversarial examples, same shape.
        batch_size (int): images per forward pass. (Default: 500)

    Shape:
        - output: ``{"l2", "linf", "cosine", "rel_l2"}`` → float32 tensors ``(N,)``.

    Examples::
        >>> gap = feature_gap(model, x, pgd(model, x, y, eps=0.3))
        >>> gap["l2"].mean().item()
    """
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in GAP_METRICS}
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(x), batch_size):
            gap = pairwise_gap(model.features(x[i:i + batch_size]), model.features(x_adv[i:i + batch_size]))
            for k, v in gap.items():
                parts[k].append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def gap_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None = None, *,
              layers: str | Sequence[str] | None = None, eps: float | None = None, steps: int = 10,
              norm: str = "linf", attack: Attack | None = None, pool: str = "avg", batch_size: int = 500,
              seed: int | None = 0) -> pd.DataFrame:
    """The feature gap per sample and layer, with the model's predictions and the attack's outcome.

    For features ``f = f(x)``, ``f' = f(x_adv)`` of each probed layer (pooled to one vector)::

        l2 = ‖f − f'‖₂    linf = max_i |f_i − f'_i|    cosine = 1 − cos(f, f')    rel_l2 = ‖f − f'‖₂ / ‖f‖₂

    The feature gap is the quantity AFD sets out to close (adversarial fine-tuning via feature
    disentanglement, arXiv 2401.14707, AAAI 2025), whose plots use ``linf``.

    Arguments:
        model (nn.Module): classifier taking images in [0, 1]; featgap models default ``layers``
            to their ``layer_names``, any other module needs ``layers``.
        x (Tensor): natural images, float in [0, 1] or uint8.
        y (Tensor): labels.
        x_adv (Tensor | None): adversarial examples of ``x``; made with ``attack`` or PGD-``steps``
            at ``eps`` when ``None``. (Default: None)
        layers (str | list[str] | None): module names, torchvision graph nodes or ``"logits"``.
            (Default: ``model.layer_names``)
        eps (float | None): PGD radius in pixel units, when ``x_adv`` is not given.
        steps, norm, attack, seed: the attack (see :func:`adversarial_examples`).
        pool (str): ``"avg"`` or ``"flatten"`` for feature maps. (Default: ``"avg"``)
        batch_size (int): images per forward pass. (Default: 500)

    Shape:
        - x, x_adv: ``(N, C, H, W)``. y: ``(N,)``.
        - output: DataFrame of ``N × len(layers)`` rows, layer by layer, with the columns
          ``sample, label, layer, l2, linf, cosine, rel_l2, nat_pred, adv_pred, nat_correct,
          adv_correct, outcome`` (:data:`COLUMNS`).

    Examples::
        >>> df = gap_table(model, x, y, eps=0.3)
        >>> df.groupby(["layer", "outcome"])["l2"].mean()
    """
    names = LayerReader(model, layers, pool).layers  # unknown layers fail here, before the attack runs
    x_adv = with_adversarial(model, x, y, x_adv, eps=eps, steps=steps, norm=norm, attack=attack,
                             batch_size=batch_size, seed=seed)
    read = names if LOGITS in names else [*names, LOGITS]
    nat = extract_features(model, x, read, pool=pool, batch_size=batch_size, desc="natural features")
    adv = extract_features(model, x_adv, read, pool=pool, batch_size=batch_size, desc="adversarial features")
    labels = y.cpu().numpy()
    nat_pred = nat[LOGITS].argmax(1).numpy()
    adv_pred = adv[LOGITS].argmax(1).numpy()
    nat_ok, adv_ok = nat_pred == labels, adv_pred == labels
    outcome = np.where(~nat_ok, "wrong", np.where(adv_ok, "robust", "flipped")).astype(object)
    n = len(labels)
    parts = []
    for name in names:
        gap = pairwise_gap(nat[name], adv[name])
        parts.append(frame({"sample": np.arange(n), "label": labels, "layer": np.full(n, name, dtype=object),
                            **{k: gap[k] for k in GAP_METRICS},
                            "nat_pred": nat_pred, "adv_pred": adv_pred, "nat_correct": nat_ok,
                            "adv_correct": adv_ok, "outcome": outcome}))
    return concat(parts)


def gap_vs_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               x_adv: Mapping[float, torch.Tensor] | None = None, *, eps: Sequence[float],
               layers: str | Sequence[str] | None = None, steps: int = 10, norm: str = "linf", pool: str = "avg",
               batch_size: int = 500, seed: int | None = 0) -> pd.DataFrame:
    """:func:`gap_table` at each attack radius, stacked, with an ``eps`` column in front.

    "How does the gap grow with the attack budget?" ε = 0 is allowed (the "attack" returns the
    natural input: every gap is 0). Each radius uses the same PGD seed, so the curves differ
    only by ε.

    Arguments:
        model, x, y, layers, steps, norm, pool, batch_size, seed: as for :func:`gap_table`.
        x_adv (dict | None): precomputed adversarial examples per radius, ``{eps: x_adv}``;
            radii missing from it are attacked with PGD. (Default: None)
        eps (list[float]): the radii, in pixel units, in the order the rows should come.

    Shape:
        - output: DataFrame of ``len(eps) × N × len(layers)`` rows; columns ``eps`` and those of
          :func:`gap_table`.

    Examples::
        >>> df = gap_vs_eps(model, x, y, eps=[0.0, 0.05, 0.1, 0.2, 0.3])
        >>> summarize(df, by=["eps", "layer"], metrics=["l2", "adv_correct"])   # gap and accuracy
    """
    if isinstance(eps, (int, float)):
        eps = [eps]
    eps_values = [float(e) for e in eps]
    if not eps_values:
        raise FeatgapError("give at least one eps value")
    given = dict(x_adv or {})
    tables = []
    for e in progress(eps_values, desc="eps sweep", leave=False) if len(eps_values) > 1 else eps_values:
        t = gap_table(model, x, y, given.get(e), layers=layers, pool=pool, eps=e, steps=steps, norm=norm,
                      batch_size=batch_size, seed=seed)
        t.insert(0, "eps", np.full(len(t), e))
        tables.append(t)
    return concat(tables)
