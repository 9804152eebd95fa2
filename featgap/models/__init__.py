"""Model registry: ``create(name, num_classes, in_channels)`` → a :class:`FeatureModel`.

=================  ==========================================================================
name               what it is
=================  ==========================================================================
smallcnn           4 convs + 1 FC feature layer (128-d); seconds per epoch on a 2-core CPU
preact_resnet18    pre-activation ResNet-18 (He et al. 2016), CIFAR stem; 512-d features
resnet18           ResNet-18, CIFAR variant (3×3 stem, no max-pool); 512-d features
wrn34_10           WideResNet-34-10 (Zagoruyko & Komodakis 2016); 640-d features
=================  ==========================================================================

Every model keeps the contract of :class:`featgap.models.base.FeatureModel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from featgap.errors import FeatgapError
from featgap.models.base import FeatureModel, Normalize
from featgap.models.resnet import PreActResNet18, ResNet18
from featgap.models.smallcnn import SmallCNN
from featgap.models.wideresnet import WRN34_10

MODELS: dict[str, Callable[..., FeatureModel]] = {
    "smallcnn": SmallCNN,
    "preact_resnet18": PreActResNet18,
    "resnet18": ResNet18,
    "wrn34_10": WRN34_10,
}


def create(name: str, num_classes: int = 10, in_channels: int = 3,
           mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> FeatureModel:
    """Build registry model ``name`` with a fresh (seeded by the caller) initialisation.

    ``mean``/``std`` set the normalisation layer inside the model (identity when omitted);
    pass a dataset's ``info.mean``/``info.std``.
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise FeatgapError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
    return factory(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)


__all__ = ["MODELS", "FeatureModel", "Normalize", "create"]
