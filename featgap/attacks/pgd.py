"""FGSM and PGD: first-order attacks inside an ε-ball, in [0, 1] pixel space.

Projected gradient descent (Madry et al. 2018, arXiv 1706.06083) repeats::

    x' ← Π_{B_ε(x) ∩ [0,1]}( x' + α · step_direction(∇_{x'} objective) )

where the step direction is ``sign(g)`` for L∞ and ``g / ‖g‖₂`` for L2, and Π projects back
onto the ε-ball around the natural input and the valid pixel range. With a random start
(uniform in the ball) and ``steps=1, step_size=ε`` it is FGSM with random start (Wong et al.
2020); without random start, FGSM (Goodfellow et al. 2015).

Two promises every featgap attack keeps:

* the model is switched to eval mode for the attack (batch-norm running statistics, no
  dropout) and restored to its previous mode afterwards;
* model parameters never collect gradients from the attack (``torch.autograd.grad`` is taken
  with respect to the input only), so an attack can run in the middle of a training step.

Usage::

    x_adv = pgd(model, x, y, eps=8/255, steps=10)          # L∞, CE, random start
    x_adv = pgd(model, x, y, eps=0.5, norm="l2", steps=20)
"""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

import torch
from torch import nn

from featgap.attacks.objectives import Objective, cross_entropy

NORMS = ("linf", "l2")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore each module's own mode."""
    modes = [m.training for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in zip(model.modules(), modes):
            m.training = mode


def default_step_size(eps: float, steps: int) -> float:
    """2.5·ε/steps (Madry et al.): enough to cross the ball and come back within ``steps``."""
    return 2.5 * eps / max(steps, 1)


def l2_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm of a batch ``(B, ...)``, at least 1e-12, shaped ``(B, 1, …, 1)`` to broadcast against it."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Per sample, the perturbation ``delta`` projected onto the ``norm``-ball of radius ``eps`` (clip or rescale)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / l2_norm(delta)).clamp(max=1.0)


def step_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent step of unit size for ``norm``: ``sign(g)`` for L∞, ``g / ‖g‖₂`` for L2."""
    return grad.sign() if norm == "linf" else grad / l2_norm(grad)


def _random_start(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    # uniform in the L2 ball: Gaussian direction, radius ε·U^(1/d)
    direction = torch.randn_like(x)
    direction = direction / l2_norm(direction)
    d = x[0].numel()
    radius = eps * torch.rand(x.shape[0], device=x.device).pow(1.0 / d).view(-1, *([1] * (x.ndim - 1)))
    return direction * radius


def _check(eps: float, norm: str, steps: int) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if eps < 0:
        raise ValueError("eps must be non-negative")
    if steps < 0:
        raise ValueError("steps must be non-negative")


def _pgd_once(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
              step_size: float, norm: str, random_start: bool, objective: Objective) -> torch.Tensor:
    delta = _random_start(x, eps, norm) if random_start and eps > 0 else torch.zeros_like(x)
    x_adv = (x + delta).clamp(0.0, 1.0)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = objective(model, x_adv, y).sum()
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            step = step_direction(grad, norm)
            delta = project(x_adv + step_size * step - x, eps, norm)
            x_adv = (x + delta).clamp(0.0, 1.0)
    return x_adv.detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
        step_size: float | None = None, norm: str = "linf", random_start: bool = True,
        restarts: int = 1, objective: Objective = cross_entropy) -> torch.Tensor:
    """Projected gradient ascent on ``objective`` within the ``norm``-ball of radius ``eps``.

    Args:
        model: maps images in [0, 1] to logits (any ``nn.Module``).
        x: natural images ``(B, C, H, W)`` in [0, 1]. y: labels ``(B,)``.
        eps: radius of the threat model, in pixel units (e.g. 8/255, 0.3, 0.5 for L2).
        steps: gradient steps; step_size: α (default :func:`default_step_size`).
        norm: ``"linf"`` or ``"l2"``.
        random_start: start uniformly inside the ball (else at ``x``).
        restarts: independent runs; per sample, a run that fools the model beats one that
            does not, and among equals the higher objective wins.
        objective: what to maximise (see :mod:`featgap.attacks.objectives`).

    Returns:
        adversarial images, same shape as ``x``, within the ball and in [0, 1], detached.
    """
    _check(eps, norm, steps)
    alpha = default_step_size(eps, steps) if step_size is None else step_size
    x = x.detach()
    with eval_mode(model), torch.enable_grad():
        best = _pgd_once(model, x, y, eps, steps, alpha, norm, random_start, objective)
        if restarts > 1:
            best_fooled, best_obj = _restart_score(model, best, y, objective)
            for _ in range(restarts - 1):
                cand = _pgd_once(model, x, y, eps, steps, alpha, norm, random_start, objective)
                fooled, obj = _restart_score(model, cand, y, objective)
                # fooling the model ranks first; among equals the higher objective wins
                better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (obj > best_obj))
                best = torch.where(better.view(-1, *([1] * (x.ndim - 1))), cand, best)
                best_fooled = best_fooled | fooled
                best_obj = torch.where(better, obj, best_obj)
    return best


def _restart_score(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, objective: Objective
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: (does it fool the model, the objective's value in float64)."""
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
        return fooled, objective(model, x_adv, y).double()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
         random_start: bool = False, step_size: float | None = None,
         objective: Objective = cross_entropy) -> torch.Tensor:
    """Fast gradient sign method: one step of size ``eps`` (Goodfellow et al. 2015).

    With ``random_start=True`` and ``step_size=1.25·eps`` it is the "FGSM-RS" of fast
    adversarial training (Wong et al. 2020).
    """
    return pgd(model, x, y, eps=eps, steps=1, step_size=eps if step_size is None else step_size,
               norm=norm, random_start=random_start, objective=objective)
