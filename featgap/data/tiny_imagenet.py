"""Tiny ImageNet: 200 ImageNet classes at 64×64, from the Stanford CS231n course.

The dataset is one zip, ``http://cs231n.stanford.edu/tiny-imagenet-200.zip`` (≈ 250 MB), that
unpacks to ``root/tiny-imagenet-200/``::

    wnids.txt                      200 WordNet ids (e.g. n01443537), one per line;
                                   a class's label is its line number (0..199)
    words.txt                      wnid → human-readable name (not needed here)
    train/<wnid>/images/*.JPEG     500 training images per class (100,000 in all)
    val/images/*.JPEG              10,000 validation images, 50 per class
    val/val_annotations.txt        one line per val image, tab-separated:
                                   file name, wnid, bounding box x0, y0, x1, y1
    test/images/*.JPEG             10,000 images *without* labels

featgap's ``"test"`` split is the official **val** split, the only held-out split with labels.
Images are 64×64 JPEGs; a few are greyscale, so every image is converted to RGB.

Decoding 100,000 JPEGs takes a while, so the decoded arrays are cached next to the data as
``tiny-imagenet-200/featgap-cache-{split}.npz`` (uncompressed: about 1.2 GB for train, which
loads in about a second). The cache stores a fingerprint of what it was built from — the wnid
list, every file's relative path, size and label — and is rebuilt when any of that changes.
Delete the cache files to reclaim the space; they are rebuilt on the next load.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from featgap.data.imageset import ImageSet
from featgap.data.info import DATASETS
from featgap.data.torchvision_sets import not_found
from featgap.errors import FeatgapError

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FOLDER = "tiny-imagenet-200"
SIZE = 64
_CACHE_VERSION = "1"  # bump when the cached layout changes
_IMAGE_SUFFIXES = (".jpeg", ".jpg")


def _natural_key(name: str) -> list[object]:
    """Sort ``val_2`` before ``val_10`` (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _images_in(folder: Path) -> list[Path]:
    """The JPEG files directly inside ``folder``, in natural order."""
    names = [e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(_IMAGE_SUFFIXES)]
    return [folder / n for n in sorted(names, key=_natural_key)]


def _incomplete(folder: Path, what: str) -> FeatgapError:
    return FeatgapError(f"tiny-imagenet under {folder.as_posix()}/ is incomplete ({what}); "
                        "delete it and run 'featgap data download tiny-imagenet'")


def read_wnids(folder: Path) -> list[str]:
    """The class ids of ``wnids.txt``; a class's label is its index in this list."""
    wnids = [line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()]
    if len(wnids) != len(set(wnids)):
        raise _incomplete(folder, "wnids.txt lists a class twice")
    return wnids


def list_split(folder: Path, split: str, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
    """Every image file of ``split`` and its label (``"test"`` reads the official val split)."""
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            images = folder / "train" / wnid / "images"
            if not images.is_dir():
                raise _incomplete(folder, f"missing train/{wnid}/images/")
            found = _images_in(images)
            files += found
            labels += [index[wnid]] * len(found)
    else:
        notes = folder / "val" / "val_annotations.txt"
        if not notes.is_file() or not (folder / "val" / "images").is_dir():
            raise _incomplete(folder, "missing val/images/ or val/val_annotations.txt")
        wnid_of = {}
        for line in notes.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 2:
                wnid_of[fields[0]] = fields[1]
        for path in _images_in(folder / "val" / "images"):
            wnid = wnid_of.get(path.name)
            if wnid not in index:
                raise _incomplete(folder, f"val image {path.name} has no known class in val_annotations.txt")
            files.append(path)
            labels.append(index[wnid])
    if not files:
        raise _incomplete(folder, f"no images for split {split!r}")
    return files, np.asarray(labels, dtype=np.int64)


def fingerprint(folder: Path, split: str, wnids: list[str], files: list[Path], labels: np.ndarray) -> str:
    """A hash of everything the cache of ``split`` is built from (names, sizes, labels)."""
    h = hashlib.sha256(f"featgap-tiny-imagenet v{_CACHE_VERSION} {split} {len(files)}\n".encode())
    h.update("\n".join(wnids).encode())
    for path, label in zip(files, labels.tolist()):
        h.update(f"\n{path.relative_to(folder).as_posix()}\t{path.stat().st_size}\t{label}".encode())
    return h.hexdigest()


def _read_cache(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (images, labels) if ``path`` holds a cache for ``key``; else ``None``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            images, labels = z["images"], z["labels"]
    except Exception:  # noqa: BLE001 - an unreadable cache is simply rebuilt
        return None
    if images.dtype != np.uint8 or images.shape[1:] != (3, SIZE, SIZE) or labels.shape != images.shape[:1]:
        return None
    return images, labels


def _write_cache(path: Path, key: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the cache atomically: a temp file in the same folder, then ``os.replace``."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels, key=np.array(key))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only data folder still loads, just without a cache
        warnings.warn(f"could not write the tiny-imagenet cache {path}: {exc}", stacklevel=3)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def decode(files: list[Path], desc: str = "decoding") -> np.ndarray:
    """Decode JPEGs into one ``uint8`` array ``(N, 3, 64, 64)``, with a progress bar.

    PIL releases the GIL while it decodes, so a few threads decode in parallel.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    out = np.empty((len(files), 3, SIZE, SIZE), dtype=np.uint8)

    def one(i: int) -> None:
        path = files[i]
        try:
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError...
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise FeatgapError(f"cannot decode {path.as_posix()} ({reason}); the file looks corrupt or "
                               "truncated: delete tiny-imagenet-200/ and run "
                               "'featgap data download tiny-imagenet'") from None
        if pixels.shape != (SIZE, SIZE, 3):
            raise FeatgapError(f"{path.as_posix()} is {pixels.shape[1]}×{pixels.shape[0]}, expected 64×64")
        out[i] = pixels.transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for _ in tqdm(pool.map(one, range(len(files))), total=len(files), desc=desc, unit="img"):
            pass
    return out


def _download(root: Path) -> None:
    """Fetch the official zip (MD5-checked) and unpack it into ``root/tiny-imagenet-200/``."""
    from torchvision.datasets.utils import download_and_extract_archive

    root.mkdir(parents=True, exist_ok=True)
    try:
        download_and_extract_archive(URL, download_root=str(root), md5=MD5, remove_finished=True)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise FeatgapError(f"could not download tiny-imagenet into {root.as_posix()}/: {reason}") from None


def load_tiny_imagenet(root: Path, split: str, download: bool) -> ImageSet:
    """Load ``split`` (``"train"``, or ``"test"`` = official val) from ``root/tiny-imagenet-200/``.

    Uses the decoded cache when it matches the files on disk, otherwise decodes (with a
    progress bar) and writes a fresh cache. Missing data is fetched only if ``download``.
    """
    folder = root / FOLDER
    if not (folder / "wnids.txt").is_file():
        if download:
            _download(root)
        if not (folder / "wnids.txt").is_file():
            whole = not folder.is_dir()
            raise not_found("tiny-imagenet", root, folder if whole else folder / "wnids.txt", is_folder=whole)
    wnids = read_wnids(folder)
    files, labels = list_split(folder, split, wnids)
    key = fingerprint(folder, split, wnids, files, labels)
    cache = folder / f"featgap-cache-{split}.npz"
    cached = _read_cache(cache, key)
    if cached is not None:
        images, labels = cached
    else:
        images = decode(files, desc=f"decoding tiny-imagenet {split}")
        _write_cache(cache, key, images, labels)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), DATASETS["tiny-imagenet"], split)
