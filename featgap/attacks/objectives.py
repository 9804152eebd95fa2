"""Objectives an attack *maximises*, one value per sample.

An objective is a callable ``objective(model, x_adv, y) -> Tensor[B]``. Keeping it separate
from the attack lets one PGD implementation serve every method:

* :func:`cross_entropy` — the classic untargeted attack (PGD-AT, evaluation, AFD).
* :func:`trades_kl` — TRADES' inner maximisation: KL divergence between the model's
  predictions on the natural input (fixed) and on the adversarial one.
* :func:`margin` — the Carlini–Wagner margin ``max_{j≠y} z_j − z_y`` on the logits. Unlike
  cross-entropy it never saturates: when a model's logits are huge, softmax rounds to exactly
  one-hot in float32 and the CE gradient is exactly zero (PGD then cannot move — gradient
  masking), while the margin's gradient is still the difference of two logit gradients.
* :func:`lipschitz_ratio` — the local Lipschitz ratio ``‖f(x') − f(x)‖₁ / ‖x' − x‖`` of any map
  ``f`` (a layer's output, or the logits); an attack on it estimates the local Lipschitz
  constant (:func:`featgap.attacks.pgd_best`, used by :func:`featgap.probes.local_lipschitz`).

Per-sample values (not a mean) let restarts keep, for each sample, the strongest example.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the true label: pushes the input away from class ``y``."""
    return F.cross_entropy(model(x_adv), y, reduction="none")


def trades_kl(natural_logits: torch.Tensor) -> Objective:
    """TRADES objective: ``KL(p(x_nat) || p(x_adv))`` with ``p(x_nat)`` held fixed.

    ``natural_logits`` are the model's logits on the natural batch, computed once (their
    gradient is not needed). The returned objective ignores ``y``: TRADES' attack looks for the
    point whose prediction differs most from the natural prediction, whatever the label.
    """
    p_nat = F.softmax(natural_logits.detach().float(), dim=1)

    def kl(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_p_adv = F.log_softmax(model(x_adv).float(), dim=1)
        return F.kl_div(log_p_adv, p_nat, reduction="none").sum(dim=1)

    return kl


def margin(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini–Wagner margin ``max_{j≠y} z_j − z_y``: positive exactly when the input is misclassified."""
    logits = model(x_adv).float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.amax(dim=1) - true


def lipschitz_ratio(x: torch.Tensor, f_nat: torch.Tensor, norm: str = "linf") -> Objective:
    """The local Lipschitz ratio around ``x`` (Yang et al. 2020, arXiv 2003.02460), per sample::

        ratio(x')  =  ‖f(x') − f(x)‖₁ / ‖x' − x‖        (‖·‖∞ for norm="linf", ‖·‖₂ for "l2")

    where ``f`` is the "model" the objective is called with — any callable from images to a
    ``(B, …)`` output, e.g. one layer's pooled features — and ``f_nat = f(x)`` is computed once by
    the caller. The denominator is clamped at 1e-12. For L∞ it is differentiated through ``max``,
    whose gradient goes to one coordinate of largest change (``amax`` spreads it over every tied
    coordinate, which stalls an ascent once the iterate sits on the faces of the ball). ``y`` is
    ignored: the ratio does not depend on a label.
    """
    x, f_nat = x.detach(), f_nat.detach()

    def ratio(model: Callable[[torch.Tensor], torch.Tensor], x_adv: torch.Tensor, y: torch.Tensor | None = None
              ) -> torch.Tensor:
        top = (model(x_adv) - f_nat).flatten(1).abs().sum(dim=1)
        diff = (x_adv - x).flatten(1)
        bottom = diff.abs().max(dim=1).values if norm == "linf" else diff.norm(dim=1)
        return top / bottom.clamp_min(1e-12)

    return ratio
