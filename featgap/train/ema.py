"""Exponential moving average of a model's weights and buffers.

After every optimiser step s::

    θ_ema ← d·θ_ema + (1 − d)·θ,   d = min(decay, (s + 1) / (s + 10))

The warm-up term makes the average follow the model closely at the start (AFD's reference
code, and timm's ``ModelEmaV2``, do the same). Buffers (batch-norm statistics) are averaged
too. The EMA copy is what gets evaluated and exported when EMA is on.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (step + 1) / (step + 10))
        for ema_t, t in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_t.dtype.is_floating_point:
                ema_t.mul_(d).add_(t.detach(), alpha=1.0 - d)
            else:
                ema_t.copy_(t)
