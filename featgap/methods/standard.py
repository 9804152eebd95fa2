"""Standard (natural) training: minimise cross-entropy on clean inputs.

    min_θ  E_(x,y) [ CE(f_θ(x), y) ]

The baseline every robust method is compared with, and the starting point of adversarial
fine-tuning (vAFT, AFD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featgap.methods.base import Method, accuracy


class Standard(Method):
    r"""Standard (natural) training, the baseline and the start of adversarial fine-tuning.

    Paper: none; empirical risk minimisation with cross-entropy.

    Loss: CE(f(x), y) on clean inputs (no attack).

    Options: none.
    """

    name = "standard"
    adversarial = False

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(x)
        return F.cross_entropy(logits, y), {"acc": accuracy(logits, y)}
