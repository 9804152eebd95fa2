"""``wrn34_10``: WideResNet-34-10, the standard large model of adversarial-robustness papers.

Wide residual networks (Zagoruyko & Komodakis 2016, "Wide Residual Networks",
arXiv:1605.07146) trade depth for width: a WRN-d-k has ``n = (d - 4) / 6`` pre-activation
blocks per group and widens the three groups of a CIFAR ResNet (16, 32, 64 channels) by a
factor ``k``. WRN-34-10 (n = 5, k = 10, about 46.2 M parameters) is the model of Madry et
al. (2018), TRADES (Zhang et al. 2019) and Rice et al. (2020); this file follows the TRADES
code. Shapes for a 3×32×32 input (the names are ``layer_names``)::

    stem    conv3×3(C→16)                          16×32×32
    stage1  5 blocks, 160 ch, stride 1            160×32×32
    stage2  5 blocks, 320 ch, stride 2            320×16×16
    stage3  5 blocks, 640 ch, stride 2            640×8×8
    pool    BN ReLU, global avg-pool, flatten     640          = features(x)
    head    Linear(640 → classes)

The blocks are pre-activation blocks (BN-ReLU-conv-BN-ReLU-conv + shortcut, nothing after
the sum), so, as in ``preact_resnet18``, the final BN+ReLU lives in ``pool`` and ``stage3``
exposes the raw residual stream. Adaptive pooling makes the model work for any input of at
least 8×8 pixels and any number of input channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from featgap.models.base import FeatureModel
from featgap.models.resnet import PreActBlock, conv3x3, init_weights, make_stage


class WideBlock(PreActBlock):
    """A :class:`~featgap.models.resnet.PreActBlock` with optional dropout between its convs.

    ``conv2(dropout(relu(bn2(conv1(relu(bn1(x))))))) + shortcut``, where the shortcut is ``x``
    or a bare 1×1 conv on ``relu(bn1(x))`` when the width or resolution changes (TRADES'
    ``convShortcut``). With ``drop_rate=0`` (the default, and the TRADES setting) it is
    exactly a pre-activation block.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__(in_planes, planes, stride)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = F.relu(self.bn2(self.conv1(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + shortcut


class WideResNet(FeatureModel):
    """WideResNet-``depth``-``widen_factor`` (Zagoruyko & Komodakis 2016) for CIFAR-sized input.

    ``stem`` = conv3×3(C→16) (16×32×32 for a 32×32 input); three groups ``stage1..3`` of
    ``(depth - 4) / 6`` :class:`WideBlock` s with widths 16k, 32k, 64k and strides 1, 2, 2
    (16k×32×32, 32k×16×16, 64k×8×8); ``pool`` = BN-ReLU-global average pool-flatten → 64k
    features. ``depth`` must be 6n + 4 (e.g. 16, 28, 34).
    """

    layer_names = ("stem", "stage1", "stage2", "stage3", "pool")

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 drop_rate: float = 0.0) -> None:
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (e.g. 28, 34), got {depth}")
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        super().__init__(widths[2], num_classes, in_channels, mean, std)
        self.depth = depth
        self.widen_factor = widen_factor

        def block(in_planes: int, planes: int, stride: int) -> nn.Module:
            return WideBlock(in_planes, planes, stride, drop_rate)

        self.stem = conv3x3(in_channels, 16)
        self.stage1 = make_stage(block, 16, widths[0], n, 1)
        self.stage2 = make_stage(block, widths[0], widths[1], n, 2)
        self.stage3 = make_stage(block, widths[1], widths[2], n, 2)
        self.pool = nn.Sequential(
            nn.BatchNorm2d(widths[2]), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        init_weights(self)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.pool(x)


class WRN34_10(WideResNet):  # noqa: N801  (the name used throughout the literature)
    """WideResNet-34-10: depth 34 (5 blocks per group), widths 160/320/640, 640-d features.

    About 46.2 M parameters (46,160,474 with a 10-class head, as in the TRADES code); a
    forward pass on one 32×32 image costs about 6.7 G multiply-adds, so train it on a GPU.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__(34, 10, num_classes, in_channels, mean, std)
