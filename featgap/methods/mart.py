"""MART (Wang et al., ICLR 2020): adversarial training that weighs misclassified examples more.

    min_θ  E [ BCE(p(x'), y) + β · KL(p(x) ‖ p(x')) · (1 − p_y(x)) ],   x' = PGD-CE in the ε-ball

* ``BCE(p, y) = −log p_y − log(1 − max_{k≠y} p_k)``: cross-entropy on the adversarial example
  plus a margin term that pushes down its most likely *wrong* class;
* the KL term makes the prediction stable in the ε-ball, like TRADES' β term, but each example
  is weighted by ``1 − p_y(x)``: the ones the model gets wrong (or barely right) on the clean
  input count most.

The numerical guards (``+1e-12`` inside logs, ``1.0001 − p``, ``1.0000001 − p_y``) are the
reference code's (github.com/YisenWang/MART). Its attack starts at ``x + 0.001·N(0, I)``;
featgap's PGD starts uniformly in the ε-ball, as for every method. This file is the worked
example of CONTRIBUTING.md ("Adding a method").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featgap.attacks import pgd
from featgap.methods.base import Method, Option, accuracy


class MART(Method):
    r"""MART: misclassification-aware adversarial training.

    Paper: Wang et al., "Improving Adversarial Robustness Requires Revisiting Misclassified
    Examples", ICLR 2020, https://openreview.net/forum?id=rklOg6EFwS

    Loss: BCE(p(x'), y) + β · KL(p(x) ‖ p(x')) · (1 − p_y(x)),  x' = PGD-CE in the ε-ball.

    Options:
        beta (float): weight of the misclassification-aware KL term (default 6.0, the paper's).
    """

    name = "mart"
    options = (Option("beta", float, 6.0, "MART β, weight of the misclassification-aware KL term"),)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a = self.attack
        x_adv = pgd(model, x, y, eps=eps, steps=a.steps, step_size=a.step_size, norm=a.norm)
        logits_nat, logits_adv = model(x).float(), model(x_adv).float()
        p_nat, p_adv = F.softmax(logits_nat, 1), F.softmax(logits_adv, 1)
        top2 = p_adv.topk(2, dim=1).indices
        y_wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])  # the most likely wrong class
        bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), y_wrong)
        kl = F.kl_div(torch.log(p_adv + 1e-12), p_nat, reduction="none").sum(1)
        robust = (kl * (1.0000001 - p_nat.gather(1, y[:, None]).squeeze(1))).mean()
        beta = float(self.values["beta"])
        return bce + beta * robust, {"acc": accuracy(logits_nat, y), "adv_acc": accuracy(logits_adv, y),
                                     "bce": bce.detach(), "kl": robust.detach()}
