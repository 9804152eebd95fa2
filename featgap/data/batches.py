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
        extra: more training images (:func:`featgap.data.load_extra`), mixed into every batch:
            ``round(extra_fraction · batch_size)`` of each batch come from ``extra`` (drawn
            without replacement, reshuffled whenever it runs out), the rest from ``data``. The
            number of batches per epoch stays ``len(data) / batch_size``, so an epoch costs the
            same with or without extra data (and sees ``1 − extra_fraction`` of ``data``).
        extra_fraction: in [0, 1); 0 ignores ``extra``.

    Usage::

        for x, y in BatchLoader(train, 128, shuffle=True, augment="crop_flip", device="cuda"):
            loss = F.cross_entropy(model(x), y)
    """

    def __init__(self, data: ImageSet, batch_size: int, *, shuffle: bool = False, augment: str = "none",
                 drop_last: bool = False, device: torch.device | str = "cpu", seed: int = 0,
                 channels_last: bool = False, extra: ImageSet | None = None, extra_fraction: float = 0.0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0.0 <= extra_fraction < 1.0:
            raise ValueError("extra_fraction must be in [0, 1)")
        if extra_fraction > 0 and (extra is None or len(extra) == 0):
            raise ValueError("extra_fraction > 0 needs a non-empty extra set")
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
        self.n_extra = int(round(extra_fraction * batch_size)) if extra is not None else 0
        if self.n_extra >= batch_size:
            self.n_extra = batch_size - 1  # keep at least one image of the real data per batch
        self.extra_images = extra.images.to(self.device) if self.n_extra else None
        self.extra_labels = extra.labels.to(self.device) if self.n_extra else None

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
        own = self.batch_size - self.n_extra  # images per batch from the dataset itself
        extra_order = self._extra_order(len(self), gen)
        for i in range(len(self)):
            idx = order[i * own:(i + 1) * own]
            x = self.images[idx].float().div_(255.0)
            y = self.labels[idx]
            if self.n_extra:
                e = extra_order[i * self.n_extra:(i + 1) * self.n_extra]
                x = torch.cat([x, self.extra_images[e].float().div_(255.0)])
                y = torch.cat([y, self.extra_labels[e]])
            x = augment_batch(x, self.augment, generator=gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def _extra_order(self, batches: int, gen: torch.Generator) -> torch.Tensor | None:
        """Indices into ``extra`` for this epoch: permutations, concatenated until long enough."""
        if not self.n_extra:
            return None
        m, need = self.extra_labels.shape[0], batches * self.n_extra
        perms = [torch.randperm(m, device=self.device, generator=gen) for _ in range(-(-need // m))]
        return torch.cat(perms)[:need]
