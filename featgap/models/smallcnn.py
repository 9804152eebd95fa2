"""``smallcnn``: two strided convolutions and one hidden layer; trains in seconds on a CPU.

The "small" MNIST model of Wong & Kolter (2018) and Wong et al. (2020), with a 128-d feature
layer. For a 28×28 input::

    stage1: conv4×4 stride 2 (C→16) ReLU                  28×28 → 14×14
    stage2: conv4×4 stride 2 (16→32) ReLU                 14×14 → 7×7
    pool:   adaptive-avg-pool 7×7 (identity at 28×28), flatten,
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


class SmallCNN(FeatureModel):
    layer_names = ("stage1", "stage2", "pool")

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 width: int = 16, feature_dim: int = 128) -> None:
        super().__init__(feature_dim, num_classes, in_channels, mean, std)
        w = width
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, w, 4, stride=2, padding=1), nn.ReLU(inplace=True))
        self.stage2 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(2 * w * 49, feature_dim),
                                  nn.ReLU(inplace=True))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stage2(self.stage1(x)))
