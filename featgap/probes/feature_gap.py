"""Feature gap: how far apart a model's features of a natural input and of its adversarial
example lie.

For pooled feature vectors ``f = f(x)`` and ``f' = f(x')`` of one sample::

    l2      = ‖f − f'‖₂
    linf    = max_i |f_i − f'_i|          (the AFD paper's measure)
    cosine  = 1 − f·f' / (‖f‖ ‖f'‖)
    rel_l2  = ‖f − f'‖₂ / ‖f‖₂

A robust model keeps these small: the attack moves the input, but not what the model "sees".

:func:`gap_table` measures them at several layers at once and returns a tidy
:class:`~featgap.probes.Table` with one row per (sample, layer)::

    t = gap_table(model, x, y, eps=0.3)                 # PGD-10 by default
    t = gap_table(model, x, y, x_adv=my_adversarials)   # or bring your own attack's output

with the columns ``sample, label, layer, l2, linf, cosine, rel_l2, nat_pred, adv_pred,
nat_correct, adv_correct, outcome``. ``outcome`` sorts each sample into one of three groups:

* ``robust``  — classified correctly before and after the attack;
* ``flipped`` — correct on the natural input, wrong on the adversarial one;
* ``wrong``   — already misclassified on the natural input.

Comparing the gap of ``flipped`` and ``robust`` samples (:func:`~featgap.probes.summarize`)
asks whether the attack succeeded *because* the features moved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from featgap.attacks import eval_mode, pgd
from featgap.errors import FeatgapError
from featgap.probes.extract import LOGITS, LayerReader, as_float_images, extract_features, model_device
from featgap.probes.table import Table
from featgap.progress import progress

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``attack(model, x, y) -> x_adv`` on one batch (on the model's device)."""

OUTCOMES = ("robust", "flipped", "wrong")

GAP_METRICS = ("l2", "linf", "cosine", "rel_l2")


def pairwise_gap(f_nat: torch.Tensor, f_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample distances between two ``(B, D)`` feature batches (any 2-D+ shape is flattened)."""
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


def feature_gap(model: nn.Module, x_nat: torch.Tensor, x_adv: torch.Tensor, batch_size: int = 500
                ) -> dict[str, torch.Tensor]:
    """Per-sample gap between ``model.features`` of natural and adversarial inputs (no grad)."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in GAP_METRICS}
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(x_nat), batch_size):
            gap = pairwise_gap(model.features(x_nat[i:i + batch_size]), model.features(x_adv[i:i + batch_size]))
            for k, v in gap.items():
                parts[k].append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float | None = None,
                         steps: int = 10, norm: str = "linf", attack: Attack | None = None, batch_size: int = 500,
                         seed: int | None = 0) -> torch.Tensor:
    """Adversarial examples of ``x`` in batches on the model's device (returned on the CPU).

    ``attack`` (any ``attack(model, x, y) -> x_adv``) wins; otherwise PGD with ``steps`` steps,
    random start and step size 2.5·ε/steps in the ``norm``-ball of radius ``eps``. ``seed`` fixes
    the random start without touching the global RNG stream (``None``: use it as it is).
    """
    if attack is None:
        if eps is None:
            raise FeatgapError("give eps (the attack radius in pixel units) or an attack")
        if not 0.0 <= eps <= 1.0:
            raise FeatgapError(f"eps must be in [0, 1] (pixel units); got {eps}")

        def attack(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return pgd(m, xb, yb, eps=eps, steps=steps, norm=norm)

    device = model_device(model)
    out = []
    batches = range(0, len(x), batch_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        for i in progress(batches, desc="attack", leave=False) if len(batches) > 1 else batches:
            xb = as_float_images(x[i:i + batch_size]).to(device)
            out.append(attack(model, xb, y[i:i + batch_size].to(device)).detach().cpu())
    return torch.cat(out) if out else torch.empty_like(as_float_images(x))


def gap_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None = None, *,
              layers: str | Sequence[str] | None = None, pool: str = "avg", eps: float | None = None,
              steps: int = 10, norm: str = "linf", attack: Attack | None = None, batch_size: int = 500,
              seed: int | None = 0) -> Table:
    """The feature gap per sample and layer, with predictions and outcome (see the module docstring).

    Args:
        model: any classifier ``nn.Module`` taking images in [0, 1] (featgap models default
            ``layers`` to their ``layer_names``; others must name modules).
        x, y: natural images (float in [0, 1] or uint8) and labels.
        x_adv: precomputed adversarial examples; when absent they are made with ``attack`` or
            PGD-``steps`` at ``eps`` (:func:`adversarial_examples`).
        layers: module names (or torchvision graph nodes, or ``"logits"``) to compare at.
        pool: ``"avg"`` or ``"flatten"`` for feature maps (see :mod:`featgap.probes.extract`).
    """
    names = LayerReader(model, layers, pool).layers  # unknown layers fail here, before the attack runs
    if len(x) != len(y):
        raise FeatgapError(f"x has {len(x)} images but y has {len(y)} labels")
    if x_adv is None:
        x_adv = adversarial_examples(model, x, y, eps=eps, steps=steps, norm=norm, attack=attack,
                                     batch_size=batch_size, seed=seed)
    elif x_adv.shape != x.shape:
        raise FeatgapError(f"x_adv has shape {tuple(x_adv.shape)}; x has {tuple(x.shape)}")
    read = names if LOGITS in names else [*names, LOGITS]
    nat = extract_features(model, x, read, pool=pool, batch_size=batch_size, desc="natural features")
    adv = extract_features(model, x_adv, read, pool=pool, batch_size=batch_size, desc="adversarial features")
    labels = y.cpu().numpy()
    nat_pred = nat[LOGITS].argmax(1).numpy()
    adv_pred = adv[LOGITS].argmax(1).numpy()
    nat_ok, adv_ok = nat_pred == labels, adv_pred == labels
    outcome = np.where(~nat_ok, "wrong", np.where(adv_ok, "robust", "flipped"))
    n = len(labels)
    parts = []
    for name in names:
        gap = pairwise_gap(nat[name], adv[name])
        parts.append(Table({"sample": np.arange(n), "label": labels, "layer": np.full(n, name, dtype=object),
                            **{k: gap[k].numpy() for k in GAP_METRICS},
                            "nat_pred": nat_pred, "adv_pred": adv_pred, "nat_correct": nat_ok,
                            "adv_correct": adv_ok, "outcome": outcome.astype(object)}))
    return Table.concat(parts)


def gap_vs_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float], *,
               layers: str | Sequence[str] | None = None, pool: str = "avg", steps: int = 10, norm: str = "linf",
               batch_size: int = 500, seed: int | None = 0) -> Table:
    """:func:`gap_table` at each attack radius, stacked, with an ``eps`` column in front.

    "How does the gap grow with the attack budget?"::

        t = gap_vs_eps(model, x, y, [0.0, 0.05, 0.1, 0.2, 0.3])
        summarize(t, by=("eps", "layer"), metrics=["l2", "adv_correct"])   # gap and accuracy

    ε = 0 is allowed (the "attack" returns the natural input: every gap is 0). Each radius uses
    the same PGD seed, so the curves differ only by ε.
    """
    eps_values = [float(e) for e in eps_values]
    if not eps_values:
        raise FeatgapError("give at least one eps value")
    tables = []
    for eps in progress(eps_values, desc="eps sweep", leave=False) if len(eps_values) > 1 else eps_values:
        t = gap_table(model, x, y, layers=layers, pool=pool, eps=eps, steps=steps, norm=norm,
                      batch_size=batch_size, seed=seed)
        tables.append(Table({"eps": np.full(t.num_rows, eps), **dict(t)}))
    return Table.concat(tables)
