"""What a training method is: a rule that turns a batch into a loss.

A method does not own the loop (that is :class:`featgap.train.Trainer`'s job). It receives the
model, a batch ``(x, y)`` in [0, 1] pixel space and the current attack budget ``eps`` (which
the trainer may ramp up during the first epochs), and returns the loss to minimise plus named
metrics for the progress bar and ``metrics.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AttackSettings:
    """The training-time attack: PGD with these settings (ε comes from the schedule)."""

    steps: int = 10
    step_size: float | None = None  # None: 2.5·ε/steps
    norm: str = "linf"


class Method:
    """Base class. Subclasses set ``name`` and implement :meth:`loss`."""

    name: str = ""
    needs_init: bool = False
    """True when training must start from a checkpoint (fine-tuning methods such as vAFT)."""
    adversarial: bool = True

    def __init__(self, attack: AttackSettings, **options: float) -> None:
        self.attack = attack
        self.options = options

    def start(self, model: nn.Module) -> nn.Module:
        """Called once with the (initialised) model; returns the module to train.

        Most methods train the model itself. AFD keeps a frozen copy as its teacher and returns a
        student with extra layers.
        """
        return model

    def export(self, model: nn.Module) -> nn.Module:
        """The trained module → the plain model that is saved and evaluated (default: itself)."""
        return model

    def to(self, device: torch.device) -> None:
        """Move any state the method owns (e.g. a teacher) to ``device``."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(loss, metrics)``; metrics are detached scalars (e.g. ``"acc"``)."""
        raise NotImplementedError


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Share of correct predictions, as a detached scalar tensor."""
    return (logits.argmax(1) == y).float().mean().detach()
