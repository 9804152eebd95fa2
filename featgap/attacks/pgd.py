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

import math
from contextlib import contextmanager
from collections.abc import Iterator

import torch
from torch import nn

from featgap.attacks.objectives import Objective, cross_entropy
from featgap.errors import FeatgapError

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


def uniform_start(x: torch.Tensor, eps: float, norm: str = "linf", generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """A perturbation drawn uniformly from the ``norm``-ball of radius ``eps``, one per sample.

    Drawn on the CPU in float64 from ``generator`` (``None``: torch's global RNG), then moved to
    ``x``'s device and dtype, so one seed gives the same start on any device. L∞: uniform in
    ``[−ε, ε]`` per coordinate; L2: a Gaussian direction with radius ``ε·U^(1/d)``.
    """
    if norm == "linf":
        delta = (torch.rand(x.shape, generator=generator, dtype=torch.float64) * 2 - 1) * eps
    else:
        direction = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        direction = direction / l2_norm(direction)
        u = torch.rand(len(x), generator=generator, dtype=torch.float64)
        delta = direction * (eps * u.pow(1.0 / x[0].numel())).view(-1, *([1] * (x.ndim - 1)))
    return delta.to(device=x.device, dtype=x.dtype)


def _random_start(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    # uniform in the L2 ball: Gaussian direction, radius ε·U^(1/d)
    direction = torch.randn_like(x)
    direction = direction / l2_norm(direction)
    d = x[0].numel()
    radius = eps * torch.rand(x.shape[0], device=x.device).pow(1.0 / d).view(-1, *([1] * (x.ndim - 1)))
    return direction * radius


def check_eps(eps: float, norm: str = "linf", flag: str = "--eps") -> None:
    """A radius that cannot be meant is a one-line :class:`FeatgapError`.

    L∞: ε in [0, 1] (pixel units: a change of every pixel by at most ε). L2: ε ≥ 0 and finite
    (the Euclidean norm of the whole perturbation, which can exceed 1: MNIST's usual 2.0).

    >>> check_eps(2.0, "l2")       # fine
    >>> check_eps(2.0, "linf")     # FeatgapError: --eps must be in [0, 1] ...
    """
    if norm == "l2":
        if not (math.isfinite(eps) and eps >= 0):
            raise FeatgapError(f"{flag} must be a finite L2 radius ≥ 0 (pixel units, e.g. 0.5 or 2.0); got {eps}")
    elif not (math.isfinite(eps) and 0.0 <= eps <= 1.0):
        raise FeatgapError(f"{flag} must be in [0, 1] (pixel units, e.g. 0.3 or 0.0314); got {eps}")


def _check(eps: float, norm: str, steps: int) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if eps < 0:
        raise ValueError("eps must be non-negative")
    if steps < 0:
        raise ValueError("steps must be non-negative")


def _pgd_once(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
              step_size: float, norm: str, random_start: bool, objective: Objective,
              generator: torch.Generator | None = None) -> torch.Tensor:
    if not (random_start and eps > 0):
        delta = torch.zeros_like(x)
    elif generator is not None:
        delta = uniform_start(x, eps, norm, generator)
    else:
        delta = _random_start(x, eps, norm)
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
        restarts: int = 1, objective: Objective = cross_entropy,
        generator: torch.Generator | None = None) -> torch.Tensor:
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
        generator: draws the random starts (:func:`uniform_start`, on the CPU), one restart after
            the other, so the same seed gives the same starts on any device and the first
            restart of ``restarts=R`` is the run of ``restarts=1``; ``None``: torch's global RNG.

    Returns:
        adversarial images, same shape as ``x``, within the ball and in [0, 1], detached.
    """
    _check(eps, norm, steps)
    alpha = default_step_size(eps, steps) if step_size is None else step_size
    x = x.detach()
    with eval_mode(model), torch.enable_grad():
        best = _pgd_once(model, x, y, eps, steps, alpha, norm, random_start, objective, generator)
        if restarts > 1:
            best_fooled, best_obj = _restart_score(model, best, y, objective)
            for _ in range(restarts - 1):
                cand = _pgd_once(model, x, y, eps, steps, alpha, norm, random_start, objective, generator)
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
