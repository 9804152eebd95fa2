"""Where a probe's adversarial examples come from: given by the caller, or made here with PGD.

Every per-sample probe takes ``x_adv=None``; when it is ``None`` the probe calls
:func:`adversarial_examples` with its ``eps``, ``steps``, ``norm``, ``attack`` and ``seed``
arguments, so ``gap_table(model, x, y, eps=0.3)`` and ``gap_table(model, x, y, x_adv)`` are the
same measurement with a built-in or a caller's attack.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from featgap.attacks import NORMS, check_eps, pgd
from featgap.errors import FeatgapError
from featgap.probes.extract import as_float_images, check_batch_size, check_images, model_device
from featgap.progress import progress

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``attack(model, x, y) -> x_adv`` on one batch (on the model's device)."""


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float | None = None,
                         steps: int = 10, norm: str = "linf", attack: Attack | None = None, batch_size: int = 500,
                         seed: int | None = 0) -> torch.Tensor:
    """Adversarial examples of ``x``, made in batches on the model's device and returned on the CPU.

    PGD (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
    arXiv 1706.06083) with ``steps`` steps of size 2.5·ε/steps from a random start in the
    ``norm``-ball of radius ``eps`` — or any ``attack(model, x, y) -> x_adv`` you pass.

    Arguments:
        model (nn.Module): classifier taking images in [0, 1].
        x (Tensor): natural images ``(N, C, H, W)``, float in [0, 1] or uint8.
        y (Tensor): labels ``(N,)``.
        eps (float): attack radius in pixel units, in [0, 1]; needed unless ``attack`` is given.
        steps (int): PGD steps. (Default: 10)
        norm (str): ``"linf"`` or ``"l2"``. (Default: ``"linf"``)
        attack (callable | None): replaces PGD. (Default: None)
        batch_size (int): images per attack batch. (Default: 500)
        seed (int | None): seeds the random start in a forked RNG, leaving torch's global stream
            untouched; ``None`` uses the global stream as it is. (Default: 0)

    Shape:
        - output: ``(N, C, H, W)`` float in [0, 1], on the CPU.

    Examples::
        >>> x_adv = adversarial_examples(model, x, y, eps=0.3, steps=20)
        >>> (model(x_adv).argmax(1) == y).float().mean()     # robust accuracy
    """
    check_batch_size(batch_size)
    if attack is None:
        if eps is None:
            raise FeatgapError("give eps (the attack radius in pixel units) or an attack")
        if norm not in NORMS:
            raise FeatgapError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")
        check_eps(eps, norm, flag="eps")
        if not isinstance(steps, int) or steps < 0:
            raise FeatgapError(f"steps must be a non-negative integer; got {steps!r}")

        def attack(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return pgd(m, xb, yb, eps=eps, steps=steps, norm=norm)

    device = model_device(model)
    out: torch.Tensor | None = None  # filled batch by batch: never a list of batches and their concatenation at once
    batches = range(0, len(x), batch_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        for i in progress(batches, desc="attack", leave=False) if len(batches) > 1 else batches:
            xb = as_float_images(x[i:i + batch_size]).to(device)
            adv = attack(model, xb, y[i:i + batch_size].to(device)).detach()
            if out is None:
                out = torch.empty((len(x), *adv.shape[1:]), dtype=adv.dtype)
            out[i:i + len(adv)] = adv
    return out if out is not None else torch.empty_like(as_float_images(x))


def with_adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, x_adv: torch.Tensor | None, *,
                     eps: float | None, steps: int, norm: str, attack: Attack | None, batch_size: int,
                     seed: int | None) -> torch.Tensor:
    """``x_adv`` checked against ``x`` and ``y``, or made by :func:`adversarial_examples` when it is ``None``.

    Images and labels a probe cannot use (outside [0, 1], NaN, wrong shape or channels, labels out
    of range, none at all) are a one-line :class:`FeatgapError` (:func:`~featgap.probes.extract.check_images`)."""
    check_batch_size(batch_size)
    check_images(model, x, y)
    if x_adv is not None:
        check_images(model, x_adv, name="x_adv")
        if tuple(x_adv.shape) != tuple(x.shape):
            raise FeatgapError(f"x_adv has shape {tuple(x_adv.shape)}; x has {tuple(x.shape)}")
        return x_adv
    if y is None:
        raise FeatgapError("give y (the labels the attack pushes away from) or x_adv")
    if eps is None and attack is None:
        raise FeatgapError("give x_adv, or eps (the attack radius in pixel units) to attack with PGD, or an attack")
    return adversarial_examples(model, x, y, eps=eps, steps=steps, norm=norm, attack=attack,
                                batch_size=batch_size, seed=seed)
