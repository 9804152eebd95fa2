"""Batches drawn from an :class:`ImageSet` that lives on the training device.

Rather than a ``DataLoader`` with worker processes that decode and augment one image at a
time, the whole dataset is moved to the device once, as uint8, and each batch is indexed,
converted to float and augmented with a few batched tensor operations (the "airbench" way).
On a GPU this keeps the loader from ever starving the model; on a 2-core CPU it avoids worker
processes altogether.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from featgap.data.imageset import ImageSet

AUGMENTATIONS = ("none", "crop", "crop_flip")


def augment_batch(x: torch.Tensor, kind: str, padding: int = 4,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding ``padding``) and, for ``"crop_flip"``, horizontal flip.

    ``x`` is a float batch ``(B, C, H, W)``; every image gets its own offsets and flip, drawn
    with ``generator`` (on ``x``'s device). The crop is one gather: pad once, then index the
    padded batch with per-sample shifted row and column grids.
    """
    if kind == "none":
        return x
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; choose one of {AUGMENTATIONS}")
    b, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]  # B,1,H,1
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :]  # B,1,1,W
    batch_idx = torch.arange(b, device=dev)[:, None, None, None]
    chan_idx = torch.arange(c, device=dev)[None, :, None, None]
    out = padded[batch_idx, chan_idx, rows, cols]
    if kind == "crop_flip":
        flip = torch.rand(b, device=dev, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out


class BatchLoader:
    """Iterate over ``(x, y)`` batches: ``x`` float in [0, 1] on ``device``, ``y`` int64.

    Args:
        data: the images, kept on ``device`` as uint8 for the loader's lifetime.
        batch_size: images per batch.
        shuffle: draw a new permutation every epoch (seeded by ``seed`` and the epoch count).
        augment: ``"none"``, ``"crop"`` or ``"crop_flip"`` (see :func:`augment_batch`).
        drop_last: skip a final smaller batch (keeps batch statistics steady in training).
        device: where the data and batches live.
        seed: makes shuffling and augmentation reproducible.

    Usage::

        for x, y in BatchLoader(train, 128, shuffle=True, augment="crop_flip", device="cuda"):
            loss = F.cross_entropy(model(x), y)
    """

    def __init__(self, data: ImageSet, batch_size: int, *, shuffle: bool = False, augment: str = "none",
                 drop_last: bool = False, device: torch.device | str = "cpu", seed: int = 0,
                 channels_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r}; choose one of {AUGMENTATIONS}")
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        n = self.labels.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.labels.shape[0]
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = (torch.randperm(n, device=self.device, generator=gen) if self.shuffle
                 else torch.arange(n, device=self.device))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx].float().div_(255.0)
            x = augment_batch(x, self.augment, generator=gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
