"""What a training method is: a rule that turns a batch into a loss.

A method does not own the loop (that is :class:`featgap.train.Trainer`'s job). It receives the
model, a batch ``(x, y)`` in [0, 1] pixel space and the current attack budget ``eps`` (which
the trainer may ramp up during the first epochs), and returns the loss to minimise plus named
metrics for the progress bar and ``metrics.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from featgap.errors import FeatgapError


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
    uses_trades_beta: bool = False
    """True for the TRADES family: the trainer passes ``TrainConfig.trades_beta`` as ``beta``."""
    pretrains: bool = False
    """True for a pre-training stage that a fine-tuning method must follow (AFA: its encoder is
    trained without the linear classifier). ``TrainConfig.finetune`` then names the second stage."""
    defaults: ClassVar[dict[str, object]] = {}
    """The method's options (``TrainConfig.extra``) and their default values. A resolved config
    records every one of them, given or not, so ``config.json`` states the full recipe."""
    choices: ClassVar[dict[str, tuple[object, ...]]] = {}
    """Options that take one of a few values."""

    def __init__(self, attack: AttackSettings, **options: object) -> None:
        self.attack = attack
        self.options = self.resolve_options(options)

    @classmethod
    def resolve_options(cls, given: dict[str, object]) -> dict[str, object]:
        """``{**defaults, **given}``; an unknown option or a value outside ``choices`` is a one-line error."""
        unknown = sorted(set(given) - set(cls.defaults))
        if unknown:
            known = ", ".join(cls.defaults) or "none"
            raise FeatgapError(f"method {cls.name} has no option {', '.join(unknown)} (its options: {known})")
        options = {**cls.defaults, **given}
        for key, allowed in cls.choices.items():
            if options[key] not in allowed:
                raise FeatgapError(f"method {cls.name}: {key} must be one of {', '.join(map(str, allowed))}; "
                                   f"got {options[key]!r}")
        return options

    def start(self, model: nn.Module) -> nn.Module:
        """Called once with the (initialised) model; returns the module to train.

        Most methods train the model itself. AFD keeps a frozen copy as its teacher and returns a
        student with extra layers.
        """
        return model

    def export(self, model: nn.Module) -> nn.Module:
        """The trained module → the plain model that is saved and evaluated.

        A model with method-owned layers (:class:`~featgap.methods.extended.ExtendedModel`)
        exports its plain part (AFD folds its disentangler in first); any other is itself.
        """
        from featgap.methods.extended import ExtendedModel

        return model.export() if isinstance(model, ExtendedModel) else model

    def param_groups(self, model: nn.Module) -> list[dict]:
        """The optimiser's parameter groups. A group may set ``lr_scale``: its learning rate is the
        scheduled lr times that (AFA's online probe learns slower than the encoder). Default: one
        group of every parameter that requires a gradient (a frozen encoder's do not)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def to(self, device: torch.device) -> None:
        """Move any state the method owns (e.g. a teacher) to ``device``."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(loss, metrics)``; metrics are detached scalars (e.g. ``"acc"``)."""
        raise NotImplementedError


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Share of correct predictions, as a detached scalar tensor."""
    return (logits.argmax(1) == y).float().mean().detach()
