"""Datasets as uint8 tensors, one registry, one loader.

>>> from featgap import data
>>> train = data.load("mnist5k", "train")      # offline, 4,000 real MNIST digits
>>> train.images.shape, train.info.eps
(torch.Size([4000, 1, 28, 28]), 0.3)

``load(name, split, root, download)`` covers every dataset in :data:`DATASETS`. Datasets that
are not bundled must be on disk under ``root`` (default ``data/``); nothing is downloaded unless
asked (``download=True`` or ``featgap data download NAME``).
"""

from __future__ import annotations

from pathlib import Path

from featgap.data.batches import BatchLoader, augment_batch
from featgap.data.extra import load_extra
from featgap.data.imageset import ImageSet
from featgap.data.info import DATASETS, DatasetInfo, info
from featgap.errors import FeatgapError

DEFAULT_ROOT = Path("data")
SPLITS = ("train", "test")


def load(name: str, split: str = "train", root: str | Path = DEFAULT_ROOT, download: bool = False) -> ImageSet:
    """Load ``split`` (``"train"`` or ``"test"``) of dataset ``name`` as an :class:`ImageSet`.

    Raises :class:`FeatgapError` (one line, naming the fix) for an unknown name or split, or
    for a dataset that is not under ``root`` and was not asked to be downloaded.
    """
    meta = info(name)
    if split not in SPLITS:
        raise FeatgapError(f"unknown split {split!r}; choose 'train' or 'test'")
    if name == "mnist5k":
        from featgap.data.embedded import load_mnist5k

        return load_mnist5k(split)
    if name == "digits":
        from featgap.data.embedded import load_digits

        return load_digits(split)
    if name == "tiny-imagenet":
        from featgap.data.tiny_imagenet import load_tiny_imagenet

        return load_tiny_imagenet(Path(root), split, download)
    from featgap.data.torchvision_sets import load_torchvision

    return load_torchvision(meta, Path(root), split, download)


def download(name: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """Fetch dataset ``name`` into ``root`` (needs network access); returns its folder."""
    meta = info(name)
    if meta.offline:
        raise FeatgapError(f"{name} ships inside an installed package; nothing to download")
    for split in SPLITS:
        load(name, split, root, download=True)
    return Path(root)


__all__ = ["BatchLoader", "DATASETS", "DEFAULT_ROOT", "DatasetInfo", "ImageSet", "augment_batch", "load_extra",
           "download", "info", "load"]
