"""``smallcnn``: two strided convolutions and one hidden layer; trains in seconds on a CPU.

The "small" MNIST model of Wong & Kolter (2018) and Wong et al. (2020), with a 128-d feature
layer. For a 28×28 input::

    stage1: conv4×4 stride 2 (C→16) ReLU                  28×28 → 14×14
    stage2: conv4×4 stride 2 (16→32) ReLU                 14×14 → 7×7
    pool:   adaptive-avg-pool 7×7 (skipped at 28×28, where it is the identity), flatten,
            Linear(1568→128) ReLU                          → z (128), the features
    head:   Linear(128 → classes)

About 0.5 M multiply-adds per image. Strided convolutions instead of max-pooling make it
~5× faster on a 2-core CPU than conv+pool designs of similar size (measured with
``benchmarks/bench_smallcnn.py``), which is what makes PGD adversarial training (11 forward/
backward passes per image) a matter of seconds per epoch on 4,000 MNIST digits. No batch
norm: it behaves the same in train and eval mode. Other input sizes work too: the adaptive
pooling always hands 32×7×7 values to the feature layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from featgap.models.base import FeatureModel


@torch.fx.wrap  # a leaf of torch.fx traces (torchvision's feature extraction): its shape test is not traced
def avg_pool_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(x, size)``, skipped when ``x`` is already ``size × size``.

    There each output is the mean of a 1×1 window, i.e. the input value itself, bit for bit;
    PyTorch's CPU kernel still spends ~20 % of a smallcnn PGD step on the pool and its backward
    at 28×28 inputs (``benchmarks/results/profile_pgd_at_cpu.txt``). Returns ``x`` itself then.
    """
    if x.shape[-2] == size and x.shape[-1] == size:
        return x
    return torch.nn.functional.adaptive_avg_pool2d(x, size)


class AvgPoolTo(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d(size)`` that passes a ``size × size`` input through (:func:`avg_pool_to`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_to(x, self.output_size)


class SmallCNN(FeatureModel):
    layer_names = ("stage1", "stage2", "pool")

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 width: int = 16, feature_dim: int = 128) -> None:
        super().__init__(feature_dim, num_classes, in_channels, mean, std)
        w = width
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, w, 4, stride=2, padding=1), nn.ReLU(inplace=True))
        self.stage2 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.Sequential(AvgPoolTo(7), nn.Flatten(), nn.Linear(2 * w * 49, feature_dim),
                                  nn.ReLU(inplace=True))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stage2(self.stage1(x)))
