"""PGD adversarial training (Madry et al. 2018, arXiv 1706.06083).

    min_θ  E_(x,y) [ max_{‖δ‖≤ε} CE(f_θ(x+δ), y) ]

The inner maximisation is approximated by PGD (random start, ``steps`` steps); the outer
minimisation trains on the adversarial examples only. It costs about (steps + 1)× standard
training per epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featgap.attacks import pgd
from featgap.methods.base import Method, accuracy


class PGDAT(Method):
    r"""PGD adversarial training: train on the worst case in the ε-ball, and only on it.

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
    ICLR 2018, https://arxiv.org/abs/1706.06083

    Loss: CE(f(x'), y),  x' = PGD on CE(f(·), y) in the ε-ball (random start).

    Options: none (the attack is the run's --eps, --norm, --attack-steps, --attack-step-size).
    """

    name = "pgd_at"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a = self.attack
        x_adv = pgd(model, x, y, eps=eps, steps=a.steps, step_size=a.step_size, norm=a.norm)
        logits = model(x_adv)
        return F.cross_entropy(logits, y), {"adv_acc": accuracy(logits, y)}
