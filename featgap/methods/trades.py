"""TRADES (Zhang et al. 2019, arXiv 1901.08573): trade natural accuracy against robustness.

    min_θ  E [ CE(f(x), y) + β · max_{‖δ‖≤ε} KL( p(x) ‖ p(x+δ) ) ]

The inner maximisation is PGD on the KL term (:func:`featgap.attacks.trades_kl`), which needs
no label; β (default 6) sets the trade-off. The reference code starts its attack at
``x + 0.001·N(0, I)``; featgap uses its uniform random start in the ε-ball, the same as for
every other PGD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featgap.attacks import eval_mode, pgd, trades_kl
from featgap.methods.base import AttackSettings, Method, Option, accuracy


class TRADES(Method):
    r"""TRADES: natural accuracy plus β times the worst-case change of the prediction.

    Paper: Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy",
    ICML 2019, https://arxiv.org/abs/1901.08573

    Loss: CE(f(x), y) + β · KL(p(x) ‖ p(x')),  x' = PGD on that KL in the ε-ball (no label needed).

    Options:
        beta (float): weight of the KL (robustness) term; larger trades clean accuracy for
            robustness (default 6.0, the paper's CIFAR-10 value).
    """

    name = "trades"
    options = (Option("beta", float, 6.0, "TRADES β, weight of the KL (robustness) term"),)

    def __init__(self, attack: AttackSettings, **options: object) -> None:
        super().__init__(attack, **options)
        self.beta = float(self.values["beta"])

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a = self.attack
        with torch.no_grad(), eval_mode(model):
            natural_eval_logits = model(x)
        x_adv = pgd(model, x, y, eps=eps, steps=a.steps, step_size=a.step_size, norm=a.norm,
                    objective=trades_kl(natural_eval_logits))
        logits_nat = model(x)
        logits_adv = model(x_adv)
        natural = F.cross_entropy(logits_nat, y)
        robust = F.kl_div(F.log_softmax(logits_adv.float(), 1), F.softmax(logits_nat.float(), 1),
                          reduction="batchmean")
        return natural + self.beta * robust, {"acc": accuracy(logits_nat, y), "adv_acc": accuracy(logits_adv, y),
                                              "kl": robust.detach()}
