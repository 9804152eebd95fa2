"""The one contract every featgap model keeps.

A :class:`FeatureModel` splits a classifier into two halves::

    logits = model(x) = model.head(model.features(x))

* ``features(x)`` maps images in **[0, 1] pixel space** to the pooled penultimate vector ``z``
  of size ``feature_dim``. Input normalisation (mean/std) is the first module *inside* the
  model, so attacks and probes never need to know about it and ε is always in pixel units.
* ``head`` is a plain ``nn.Linear(feature_dim, num_classes)``.
* ``layer_names`` lists stable names of intermediate modules (e.g. ``"stage1"``, ...,
  ``"pool"``) that probes can read with forward hooks via ``model.get_submodule(name)``.
  The last entry is always the pooled penultimate layer whose output is ``features(x)``.

Subclasses implement :meth:`body` (normalised image → pooled feature vector) and register the
modules named in ``layer_names``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std stored as buffers (saved with weights)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FeatureModel(nn.Module):
    """Base class: normalisation → body → pooled features → linear head."""

    layer_names: tuple[str, ...] = ()

    def __init__(self, feature_dim: int, num_classes: int, in_channels: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        mean = tuple(mean) if mean is not None else (0.0,) * in_channels
        std = tuple(std) if std is not None else (1.0,) * in_channels
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"mean/std need {in_channels} entries, got {len(mean)}/{len(std)}")
        self.normalize = Normalize(mean, std)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.head = nn.Linear(feature_dim, num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images → pooled feature vectors ``(B, feature_dim)``."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → pooled penultimate features ``(B, feature_dim)``."""
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
