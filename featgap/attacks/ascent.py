"""Best-iterate PGD: projected gradient ascent that keeps, per sample, the highest objective seen.

:func:`~featgap.attacks.pgd` returns the *last* iterate, which is what an adversarial example
should be. When the goal is the maximum of the objective itself — a lower bound of a local
Lipschitz constant, say — the best iterate is what counts: :func:`pgd_best` runs the same
ascent (same step direction, same projection onto the ε-ball ∩ [0, 1]) from a seeded uniform
start and returns, per sample, the point with the highest value and that value::

    from featgap.attacks import lipschitz_ratio, pgd_best

    f = lambda t: model.features(t)                      # any map from images to outputs
    with torch.no_grad():
        f_nat = f(x)
    x_best, value = pgd_best(f, x, None, objective=lipschitz_ratio(x, f_nat), eps=8 / 255, steps=10,
                             generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from featgap.attacks.objectives import Objective
from featgap.attacks.pgd import NORMS, default_step_size, eval_mode, project, step_direction, uniform_start


def pgd_best(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor | None, *,
             objective: Objective, eps: float, steps: int = 10, step_size: float | None = None, norm: str = "linf",
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected gradient ascent on ``objective`` that returns the best iterate per sample.

    From ``x + δ`` with δ uniform in the ball (:func:`uniform_start`, seeded by ``generator``),
    repeat ``steps`` times::

        x' ← clip_[0,1]( x + Π_ε( x' + α · step_direction(∇_{x'} objective) − x ) )

    evaluating the objective at the start, before every step and after the last one, and keep,
    per sample, the highest value and the point where it was reached.

    Args:
        model: what ``objective`` is called with — an ``nn.Module`` (put in eval mode for the
            ascent, then restored) or any differentiable callable.
        x: natural inputs ``(B, …)`` in [0, 1]. y: labels ``(B,)``, or ``None`` for an objective
            that ignores them (e.g. :func:`~featgap.attacks.lipschitz_ratio`).
        objective: ``objective(model, x_adv, y) -> (B,)`` to maximise.
        eps: ball radius (pixel units). steps: ascent steps (0: the random start only).
        step_size: α, default :func:`~featgap.attacks.default_step_size` (2.5·ε/steps).
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised-gradient steps).
        generator: seeds the random start (CPU generator).

    Returns:
        ``(x_best, value)``: the best points ``(B, …)`` (detached, in the ball and in [0, 1]) and
        their objective values ``(B,)``. Gradients are taken with respect to the input only.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    alpha = default_step_size(eps, steps) if step_size is None else step_size
    x = x.detach()
    mode = eval_mode(model) if isinstance(model, nn.Module) else nullcontext()
    with mode:
        x_adv = (x + uniform_start(x, eps, norm, generator)).clamp(0.0, 1.0)
        best: torch.Tensor | None = None
        x_best = x_adv
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                value = objective(model, x_adv, y)
                (grad,) = torch.autograd.grad(value.sum(), x_adv)
            with torch.no_grad():
                best, x_best = _keep_best(best, x_best, value.detach(), x_adv.detach())
                x_adv = (x + project(x_adv + alpha * step_direction(grad, norm) - x, eps, norm)).clamp(0.0, 1.0)
        with torch.no_grad():  # the last iterate counts too
            x_adv = x_adv.detach()
            best, x_best = _keep_best(best, x_best, objective(model, x_adv, y), x_adv)
    return x_best, best


def _keep_best(best: torch.Tensor | None, x_best: torch.Tensor, value: torch.Tensor, x_adv: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    if best is None:
        return value.clone(), x_adv.clone()
    better = (value > best).view(-1, *([1] * (x_adv.ndim - 1)))
    return torch.maximum(best, value), torch.where(better, x_adv, x_best)

