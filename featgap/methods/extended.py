"""A featgap model plus layers a training method owns (AFD's disentangler, AFA's projection head).

Some methods train more than the model they deploy. :class:`ExtendedModel` wraps a registry
model so that

* the plain model's sub-modules are registered under their *own* names (``stage1``, …,
  ``pool``, ``head``): the wrapper's ``state_dict`` is the plain model's plus the extras, and
  probes read the same layer names;
* ``features(x)`` is the plain model's pooled feature and ``forward(x)`` its logits, unless a
  subclass says otherwise (AFD's student puts its disentangler in between);
* :meth:`plain_state` drops the extras again, and :meth:`export` returns a plain model of the
  original architecture — what a run saves as its final ``model.safetensors``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ExtendedModel(nn.Module):
    """Base class: register ``model``'s children as our own, then subclasses add their extras."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        # The plain model's forward logic (features = body(normalize(x))), not registered as a
        # sub-module: its children are ours, so nothing is stored twice.
        object.__setattr__(self, "plain", model)
        self.layer_names = tuple(model.layer_names)
        self.feature_dim, self.num_classes, self.in_channels = model.feature_dim, model.num_classes, model.in_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled feature (the same as the exported model's ``features``)."""
        return self.plain.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.plain(x)

    def extra_prefixes(self) -> tuple[str, ...]:
        """``state_dict`` prefixes of the method-owned modules (not part of the plain model)."""
        plain = {name for name, _ in self.plain.named_children()}
        return tuple(f"{name}." for name, _ in self.named_children() if name not in plain)

    def plain_state(self) -> dict[str, torch.Tensor]:
        """Our ``state_dict`` without the extras (override to fold extras in, as AFD does)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.extra_prefixes())}

    def export(self) -> nn.Module:
        """A new plain model of the original architecture holding :meth:`plain_state`, in eval mode."""
        plain = copy.deepcopy(self.plain)
        plain.load_state_dict(self.plain_state())
        return plain.eval()


__all__ = ["ExtendedModel"]
