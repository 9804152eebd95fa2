"""Per-epoch measurements on a fixed subset: clean and PGD accuracy, and the feature gap.

:class:`EpochMonitor` is the trainer's default callback. Every epoch it attacks the same
``n`` images (a stratified subset of the validation split when there is one, else of the test
split) with PGD and records::

    monitor_clean_acc, monitor_pgd_acc          accuracies in percent
    monitor_pgd_ce_acc                          PGD accuracy with the cross-entropy objective alone
    gap_l2, gap_linf, gap_cosine, gap_rel_l2    mean per-sample feature gap (see probes)

so ``metrics.jsonl`` traces how the feature gap opens or closes during training.

``monitor_pgd_acc`` counts an image as robust only if it survives **two** PGD attacks, one
maximising cross-entropy and one the logit margin (:func:`featgap.attacks.margin`). CE alone can
be fooled by a model whose logits are so large that softmax saturates and the CE gradient is
exactly zero: PGD then stands still and the model looks robust. The margin attack has no such
blind spot, so a gap between ``monitor_pgd_ce_acc`` and ``monitor_pgd_acc`` is a sign of
gradient masking. (Learning rates chosen on ``monitor_pgd_acc`` are not rewarded for masking.)
"""

from __future__ import annotations

import torch
from torch import nn

from featgap.attacks import cross_entropy, eval_mode, margin, pgd
from featgap.data import ImageSet
from featgap.probes import feature_gap


class EpochMonitor:
    """Callback: ``monitor(model, epoch) -> dict`` of the numbers above."""

    def __init__(self, data: ImageSet, *, n: int, eps: float, steps: int, norm: str,
                 device: torch.device, batch_size: int = 500, seed: int = 0) -> None:
        subset = data.stratified_subset(n, seed) if n < len(data) else data
        self.split = data.split
        self.x, self.y = subset.tensors(device)
        self.eps, self.steps, self.norm, self.batch_size = eps, steps, norm, batch_size
        self.seed = seed

    def __call__(self, model: nn.Module, epoch: int) -> dict[str, float]:
        if len(self.y) == 0:
            return {}
        clean_hits = pgd_hits = ce_hits = 0
        gaps: dict[str, list[torch.Tensor]] = {}
        cuda = [self.x.device] if self.x.device.type == "cuda" else []
        attack = {"eps": self.eps, "steps": self.steps, "norm": self.norm}
        # Own RNG stream: the same attack noise for the same epoch, and the trainer's stream
        # untouched (so a resumed run continues exactly as an uninterrupted one).
        with torch.random.fork_rng(devices=cuda), eval_mode(model):
            torch.manual_seed(self.seed + epoch)
            for i in range(0, len(self.y), self.batch_size):
                x, y = self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
                x_ce = pgd(model, x, y, objective=cross_entropy, **attack)
                x_margin = pgd(model, x, y, objective=margin, **attack)
                with torch.no_grad():
                    clean_hits += (model(x).argmax(1) == y).sum().item()
                    ce_ok, margin_ok = model(x_ce).argmax(1) == y, model(x_margin).argmax(1) == y
                ce_hits += ce_ok.sum().item()
                pgd_hits += (ce_ok & margin_ok).sum().item()
                # the gap is measured at the example that fools the model (CE's when both or neither do)
                use_margin = (ce_ok & ~margin_ok).view(-1, *([1] * (x.ndim - 1)))
                x_adv = torch.where(use_margin, x_margin, x_ce)
                for k, v in feature_gap(model, x, x_adv).items():
                    gaps.setdefault(k, []).append(v)
        n = len(self.y)
        out = {"monitor_split": self.split, "monitor_n": n,
               "monitor_clean_acc": 100.0 * clean_hits / n, "monitor_pgd_acc": 100.0 * pgd_hits / n,
               "monitor_pgd_ce_acc": 100.0 * ce_hits / n}
        out.update({f"gap_{k}": torch.cat(v).mean().item() for k, v in gaps.items()})
        return out
