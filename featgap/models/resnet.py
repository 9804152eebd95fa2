"""``resnet18`` and ``preact_resnet18``: the two CIFAR ResNet-18s of the robustness literature.

Both follow the CIFAR variant used by the Madry, TRADES, AFD and Rice et al. code bases
(after kuangliu/pytorch-cifar): a single 3×3 stem convolution with stride 1 and **no
max-pool**, so a 32×32 image keeps full resolution in the first stage. Shapes for a 3×32×32
input (the names are ``layer_names``; hook them with ``model.get_submodule(name)``)::

    stem    conv3×3(C→64) [BN ReLU]          64×32×32
    stage1  2 blocks, 64 ch,  stride 1       64×32×32
    stage2  2 blocks, 128 ch, stride 2      128×16×16
    stage3  2 blocks, 256 ch, stride 2      256×8×8
    stage4  2 blocks, 512 ch, stride 2      512×4×4
    pool    [BN ReLU] global avg-pool, flatten  512      = features(x)
    head    Linear(512 → classes)

* :class:`ResNet18` (He et al. 2016, "Deep Residual Learning for Image Recognition") uses
  post-activation :class:`BasicBlock` s: conv-BN-ReLU-conv-BN, add the shortcut, then ReLU.
  The stem is conv-BN-ReLU; ``pool`` is just average pooling.
* :class:`PreActResNet18` (He et al. 2016, "Identity Mappings in Deep Residual Networks")
  uses :class:`PreActBlock` s: BN-ReLU-conv-BN-ReLU-conv, add the shortcut, no activation
  after the sum, so the residual stream stays an identity path. The stem is a bare conv, and
  the final BN+ReLU that the last block leaves out **lives in** ``pool`` — hence the output
  of ``stage4`` is the raw (un-normalised) residual stream and ``pool`` is
  BN-ReLU-avgpool-flatten.

Adaptive average pooling makes both models work for any input of at least 8×8 pixels and
any number of channels (e.g. 1×28×28 MNIST gives 512×4×4 after ``stage4``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from featgap.models.base import FeatureModel


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) for convolutions, γ=1/β=0 for batch norm.

    This is the initialisation of torchvision's ResNets and of the TRADES WideResNet code
    (``normal(0, sqrt(2 / (k·k·out_channels)))``). Linear layers keep PyTorch's default.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1 and no bias (a batch norm always sits next to it)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation residual block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    The shortcut is the identity, or a strided 1×1 conv + BN when the block changes the
    resolution or the width (the "option B" projection of He et al.).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation residual block: ``conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut``.

    Nothing is applied after the sum. When a projection is needed (stride or width change),
    it is a bare strided 1×1 conv applied to the *activated* input ``relu(bn1(x))``, as in
    He et al.'s pre-activation code; otherwise the shortcut is ``x`` itself.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def make_stage(block: Callable[[int, int, int], nn.Module], in_planes: int, planes: int,
               blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` residual blocks; only the first one strides (and may change the width)."""
    layers = [block(in_planes, planes, stride)]
    layers += [block(planes, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet18(FeatureModel):
    """ResNet-18, CIFAR variant (He et al. 2016, arXiv:1512.03385), 512-d features.

    ``stem`` = conv3×3(C→64)-BN-ReLU (64×32×32 for a 32×32 input), then four stages of two
    :class:`BasicBlock` s (64×32×32, 128×16×16, 256×8×8, 512×4×4), then ``pool`` =
    global average pool + flatten → 512. About 11.2 M parameters.
    """

    layer_names = ("stem", "stage1", "stage2", "stage3", "stage4", "pool")

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__(512, num_classes, in_channels, mean, std)
        self.stem = nn.Sequential(conv3x3(in_channels, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.stage1 = make_stage(BasicBlock, 64, 64, 2, 1)
        self.stage2 = make_stage(BasicBlock, 64, 128, 2, 2)
        self.stage3 = make_stage(BasicBlock, 128, 256, 2, 2)
        self.stage4 = make_stage(BasicBlock, 256, 512, 2, 2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        init_weights(self)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.pool(x)


class PreActResNet18(FeatureModel):
    """Pre-activation ResNet-18 (He et al. 2016, arXiv:1603.05027), 512-d features.

    The robust-overfitting baseline of Rice et al. (2020). ``stem`` = bare conv3×3(C→64)
    (64×32×32), four stages of two :class:`PreActBlock` s (64×32×32, 128×16×16, 256×8×8,
    512×4×4), then ``pool`` = BN(512)-ReLU-global average pool-flatten → 512. The final
    BN+ReLU sits in ``pool`` so that ``stage4`` exposes the raw residual stream and ``pool``
    alone turns it into ``features(x)``. About 11.2 M parameters.
    """

    layer_names = ("stem", "stage1", "stage2", "stage3", "stage4", "pool")

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__(512, num_classes, in_channels, mean, std)
        self.stem = conv3x3(in_channels, 64)
        self.stage1 = make_stage(PreActBlock, 64, 64, 2, 1)
        self.stage2 = make_stage(PreActBlock, 64, 128, 2, 2)
        self.stage3 = make_stage(PreActBlock, 128, 256, 2, 2)
        self.stage4 = make_stage(PreActBlock, 256, 512, 2, 2)
        self.pool = nn.Sequential(
            nn.BatchNorm2d(512), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        init_weights(self)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.pool(x)
