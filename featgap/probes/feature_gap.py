"""Feature gap: how far apart a model's features of a natural input and of its adversarial
example lie.

For pooled feature vectors ``f = f(x)`` and ``f' = f(x')`` of one sample::

    l2      = ‖f − f'‖₂
    linf    = max_i |f_i − f'_i|          (the AFD paper's measure)
    cosine  = 1 − f·f' / (‖f‖ ‖f'‖)
    rel_l2  = ‖f − f'‖₂ / ‖f‖₂

A robust model keeps these small: the attack moves the input, but not what the model "sees".
"""

from __future__ import annotations

import torch
from torch import nn

from featgap.attacks import eval_mode

GAP_METRICS = ("l2", "linf", "cosine", "rel_l2")


def pairwise_gap(f_nat: torch.Tensor, f_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample distances between two ``(B, D)`` feature batches (any 2-D+ shape is flattened)."""
    a = f_nat.flatten(1).float()
    b = f_adv.flatten(1).float()
    diff = a - b
    l2 = diff.norm(dim=1)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12)
    # 1 − cos in float32 can come out a hair below 0 or above 0 for identical vectors: clamp to
    # [0, 2] and make identical non-zero vectors exactly 0 (a zero vector keeps distance 1).
    cosine = (1.0 - cos).clamp(0.0, 2.0)
    cosine = torch.where((l2 == 0) & (a.norm(dim=1) > 0), torch.zeros_like(cosine), cosine)
    return {"l2": l2, "linf": diff.abs().amax(dim=1), "cosine": cosine,
            "rel_l2": l2 / a.norm(dim=1).clamp_min(1e-12)}


def feature_gap(model: nn.Module, x_nat: torch.Tensor, x_adv: torch.Tensor, batch_size: int = 500
                ) -> dict[str, torch.Tensor]:
    """Per-sample gap between ``model.features`` of natural and adversarial inputs (no grad)."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in GAP_METRICS}
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(x_nat), batch_size):
            gap = pairwise_gap(model.features(x_nat[i:i + batch_size]), model.features(x_adv[i:i + batch_size]))
            for k, v in gap.items():
                parts[k].append(v)
    return {k: torch.cat(v) for k, v in parts.items()}
