"""MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN, read straight from their original files.

torchvision knows where these datasets live on the internet and how to verify them, so
``download=True`` asks torchvision's dataset class to fetch them (it checks MD5 sums while it
does). For *reading*, featgap parses each format itself: one vectorised read per file gives a
``uint8`` tensor of shape ``(N, C, H, W)`` directly, with no per-image PIL loop and no MD5 pass
over 160 MB every time a notebook starts. The on-disk layout under ``root`` is torchvision's:

=================  ==========================================  ============================
dataset            files under ``root``                        format
=================  ==========================================  ============================
``mnist``          ``MNIST/raw/{train,t10k}-images-idx3-ubyte``  IDX (optionally ``.gz``)
                   ``MNIST/raw/{train,t10k}-labels-idx1-ubyte``
``fashion-mnist``  ``FashionMNIST/raw/`` (same names)          IDX (optionally ``.gz``)
``cifar10``        ``cifar-10-batches-py/data_batch_{1..5}``,  Python pickle
                   ``test_batch``, ``batches.meta``
``cifar100``       ``cifar-100-python/{train,test,meta}``      Python pickle (fine labels)
``svhn``           ``svhn/{train,test}_32x32.mat``             MATLAB v5 (``scipy.io``)
=================  ==========================================  ============================

The formats, briefly:

* **IDX** (LeCun's MNIST format): a big-endian header — two zero bytes, a type code (``0x08``
  = unsigned byte), the number of dimensions ``d`` — then ``d`` big-endian ``uint32`` sizes,
  then the raw bytes in C order. Images are ``(N, 28, 28)``, labels ``(N,)``.
* **CIFAR "python version"**: each file is a pickled ``dict`` written by Python 2, so it must
  be loaded with ``encoding="latin1"`` (the keys then come back as ``str``: ``"data"``,
  ``"labels"`` or ``"fine_labels"``). ``data`` is a ``uint8`` array ``(N, 3072)``; each row
  holds the red, then green, then blue 32×32 plane, row-major — that is already C×H×W.
  Unpickling can run code, so only the few numpy names these files use are allowed.
* **SVHN** (Netzer et al. 2011, cropped digits): MATLAB arrays ``X`` of shape
  ``(32, 32, 3, N)`` (H, W, C, N) and ``y`` of shape ``(N, 1)``, where the digit 0 is stored
  as label 10; featgap maps 10 → 0, as torchvision does.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from featgap.data.imageset import ImageSet
from featgap.data.info import DatasetInfo
from featgap.errors import FeatgapError

_MNIST_FILES = {
    "train": ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"],
    "test": ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
}
LAYOUT: dict[str, tuple[str, dict[str, list[str]]]] = {
    "mnist": ("MNIST/raw", _MNIST_FILES),
    "fashion-mnist": ("FashionMNIST/raw", _MNIST_FILES),
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)],
                                        "test": ["test_batch"]}),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}),
    "svhn": ("svhn", {"train": ["train_32x32.mat"], "test": ["test_32x32.mat"]}),
}
"""Dataset name → (folder under ``root``, files each split needs inside that folder)."""


def not_found(name: str, root: Path, expected: Path, is_folder: bool = True) -> FeatgapError:
    """The one-line error for a dataset that is not on disk, naming the command that fetches it."""
    shown = expected.as_posix() + ("/" if is_folder else "")
    return FeatgapError(f"dataset {name!r} not found under {root.as_posix()}/ (expected {shown}); "
                        f"run 'featgap data download {name}' or pass --download")


@contextmanager
def reading(path: Path, name: str) -> Iterator[None]:
    """Turn any failure while parsing ``path`` into a one-line :class:`FeatgapError`."""
    try:
        yield
    except (FeatgapError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - gzip, pickle, numpy and scipy each fail differently
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise FeatgapError(f"cannot read {path.as_posix()} ({reason}); the file looks corrupt or truncated: "
                           f"delete it and run 'featgap data download {name}'") from None


def _resolve(path: Path) -> Path | None:
    """``path`` if it exists, else ``path.gz`` if that exists (IDX files may stay gzipped)."""
    if path.is_file():
        return path
    gz = path.with_name(path.name + ".gz")
    return gz if gz.is_file() else None


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX ``ubyte`` file (plain or ``.gz``) into a writable ``uint8`` array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        buf = f.read()
    if len(buf) < 4 or buf[:2] != b"\x00\x00" or buf[2] != 0x08:
        raise ValueError("not an IDX file of unsigned bytes (bad magic number)")
    ndim = buf[3]
    offset = 4 + 4 * ndim
    if len(buf) < offset:
        raise ValueError("header ends early")
    dims = struct.unpack(f">{ndim}I", buf[4:offset])
    count = int(np.prod(dims))
    if len(buf) - offset != count:
        raise ValueError(f"header promises {count} bytes of data for shape {dims}, found {len(buf) - offset}")
    return np.frombuffer(buf, dtype=np.uint8, count=count, offset=offset).reshape(dims).copy()


class _CifarUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that only builds what the CIFAR files contain: dicts, lists, numbers,
    strings and numpy arrays (a pickle can otherwise call any importable function)."""

    _ALLOWED = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str) -> object:
        if module.split(".")[0] == "numpy" and name in self._ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # how Python 3 pickles bytes in protocol 2
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle → images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64."""
    with open(path, "rb") as f:
        entry = _CifarUnpickler(f, encoding="latin1").load()
    # Python-2 str keys load as str under latin1; tolerate files re-saved with bytes keys.
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data = np.asarray(entry["data"])
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"expected uint8 data of shape (N, 3072) and N labels, got {data.dtype} "
                         f"{data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN ``.mat`` → images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64, 10 → 0."""
    from scipy.io import loadmat

    mat = loadmat(path, variable_names=["X", "y"])
    x, y = mat["X"], mat["y"]
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise ValueError(f"expected X of shape (32, 32, 3, N) and N labels, got {x.shape} and {y.shape}")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8, copy=False)  # HWCN → NCHW
    labels = y.reshape(-1).astype(np.int64)
    labels[labels == 10] = 0
    return images, labels


def _read(name: str, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read the files of one split (as listed in :data:`LAYOUT`) into (images, labels)."""
    if name in ("mnist", "fashion-mnist"):
        image_path, label_path = paths
        with reading(image_path, name):
            images = read_idx(image_path)
            if images.ndim != 3 or images.shape[1:] != (28, 28):
                raise ValueError(f"expected images of shape (N, 28, 28), got {images.shape}")
        with reading(label_path, name):
            labels = read_idx(label_path).astype(np.int64)
            if labels.shape != images.shape[:1]:
                raise ValueError(f"{len(labels)} labels for {len(images)} images in {image_path.name}")
        return images[:, None], labels
    if name == "svhn":
        with reading(paths[0], name):
            return read_svhn(paths[0])
    label_key = "labels" if name == "cifar10" else "fine_labels"
    parts = []
    for path in paths:
        with reading(path, name):
            parts.append(read_cifar_batch(path, label_key))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _download(name: str, root: Path, split: str) -> None:
    """Let torchvision fetch (and MD5-check) ``name`` into the layout of :data:`LAYOUT`."""
    import torchvision.datasets as tvd

    makers: dict[str, Callable[[], object]] = {
        "mnist": lambda: tvd.MNIST(root, train=split == "train", download=True),
        "fashion-mnist": lambda: tvd.FashionMNIST(root, train=split == "train", download=True),
        "cifar10": lambda: tvd.CIFAR10(root, train=split == "train", download=True),
        "cifar100": lambda: tvd.CIFAR100(root, train=split == "train", download=True),
        "svhn": lambda: tvd.SVHN(root / "svhn", split=split, download=True),
    }
    root.mkdir(parents=True, exist_ok=True)
    try:
        makers[name]()
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError; bad MD5 a RuntimeError
        reason = " ".join(str(exc).split())
        raise FeatgapError(f"could not download {name} into {root.as_posix()}/: {reason}") from None


def load_torchvision(meta: DatasetInfo, root: Path, split: str, download: bool) -> ImageSet:
    """Load ``split`` of a torchvision-hosted dataset from ``root`` as an :class:`ImageSet`.

    Files already on disk are read as they are (no network needed even when ``download`` is
    true); missing ones are fetched when ``download`` is true, else a one-line
    :class:`FeatgapError` names the folder expected and the command that fetches it. A file that
    cannot be parsed (truncated download, wrong file) is named in a one-line error too.
    """
    if meta.name not in LAYOUT:
        raise FeatgapError(f"dataset {meta.name!r} is not a torchvision dataset")
    folder_name, files = LAYOUT[meta.name]
    folder = root / folder_name

    def locate() -> tuple[list[Path], Path | None]:
        found = [_resolve(folder / f) for f in files[split]]
        missing = next((folder / f for f, p in zip(files[split], found) if p is None), None)
        return [p for p in found if p is not None], missing

    paths, missing = locate()
    if missing is not None and download:
        _download(meta.name, root, split)
        paths, missing = locate()
    if missing is not None:
        whole = not folder.is_dir()
        raise not_found(meta.name, root, folder if whole else missing, is_folder=whole)

    images, labels = _read(meta.name, paths)
    expected = (meta.in_channels, meta.image_size, meta.image_size)
    if images.shape[1:] != expected:
        raise FeatgapError(f"{meta.name} images under {folder.as_posix()}/ have shape {images.shape[1:]}, "
                           f"expected {expected}")
    if len(labels) and (labels.min() < 0 or labels.max() >= meta.num_classes):
        raise FeatgapError(f"{meta.name} labels under {folder.as_posix()}/ fall outside 0..{meta.num_classes - 1}")
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), meta, split)
