"""`ImageSet`: a whole image dataset held as one uint8 tensor.

Every featgap dataset, whatever its source, becomes an :class:`ImageSet`: ``images`` is a
``uint8`` tensor of shape ``(N, C, H, W)`` and ``labels`` an ``int64`` tensor of shape ``(N,)``.
Keeping images as bytes makes even CIFAR-10 (50,000 × 3 × 32 × 32 = 150 MB) small enough to
live on the GPU, where batching and augmentation are plain tensor operations (see
:mod:`featgap.data.batches`). Pixels become floats in [0, 1] only when a batch is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from featgap.data.info import DatasetInfo


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, N×C×H×W), labels (int64, N) and the dataset's :class:`DatasetInfo`."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    split: str = "train"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> ImageSet:
        """The images at ``indices`` (in that order)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.info, self.split)

    def stratified_indices(self, n: int, seed: int = 0) -> torch.Tensor:
        """Indices of a class-balanced subset of ``n`` images, the same for the same seed.

        Each class contributes ``n // num_classes`` images (the remainder goes to the first
        classes in label order), drawn without replacement by a seeded permutation. The result
        is sorted, so a subset keeps the dataset's order.
        """
        labels = self.labels.numpy()
        classes = np.unique(labels)
        if n >= len(labels):
            return torch.arange(len(labels))
        rng = np.random.default_rng(seed)
        base, extra = divmod(n, len(classes))
        chosen: list[np.ndarray] = []
        shortfall = 0
        for rank, c in enumerate(classes):
            members = np.flatnonzero(labels == c)
            want = base + (1 if rank < extra else 0)
            take = min(want, len(members))
            shortfall += want - take
            chosen.append(rng.permutation(members)[:take])
        picked = np.concatenate(chosen)
        if shortfall:  # a class too small: fill up from the rest, still seeded
            rest = np.setdiff1d(np.arange(len(labels)), picked)
            picked = np.concatenate([picked, rng.permutation(rest)[:shortfall]])
        return torch.as_tensor(np.sort(picked), dtype=torch.long)

    def stratified_subset(self, n: int, seed: int = 0) -> ImageSet:
        """A class-balanced subset of ``n`` images (see :meth:`stratified_indices`)."""
        return self.subset(self.stratified_indices(n, seed))

    def split_off(self, fraction: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
        """Carve a stratified held-out part (e.g. a validation split) from this set.

        Returns ``(rest, held_out)``, disjoint, with ``held_out`` about ``fraction`` of the
        images in every class.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError("fraction must be in (0, 1)")
        held = self.stratified_indices(max(1, round(fraction * len(self))), seed)
        mask = torch.ones(len(self), dtype=torch.bool)
        mask[held] = False
        rest = ImageSet(self.images[mask], self.labels[mask], self.info, self.split)
        held_out = ImageSet(self.images[held], self.labels[held], self.info, "val")
        return rest, held_out

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float in [0, 1] and their labels, on ``device``."""
        return self.images.to(device).float().div_(255.0), self.labels.to(device)
