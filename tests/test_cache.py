"""Tests of featgap.cache: where it lives, content hashes (stable, sensitive to every input),
atomic writes and the npz entries (hits, misses, damaged files)."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from featgap import cache


def test_folders_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATGAP_CACHE", str(tmp_path / "c"))
    assert cache.root() == tmp_path / "c" and cache.folder("embeddings") == tmp_path / "c" / "embeddings"
    assert cache.folder("embeddings", tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("FEATGAP_CACHE")
    assert cache.root() == Path.home() / ".cache" / "featgap"
    assert not (tmp_path / "c").exists()  # asking for a folder creates nothing


def test_content_hash_is_the_documented_sha256():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = {"method": "pca", "settings": {"n": 2, "t": (1, 2)}}
    h = hashlib.sha256()
    h.update(json.dumps({"method": "pca", "settings": {"n": 2, "t": [1, 2]}}, sort_keys=True).encode())
    h.update(b"|<f4(2, 3)|" + a.tobytes() + b"|none")
    assert cache.content_hash(header, [a, None]) == h.hexdigest()


def test_content_hash_changes_with_every_input_and_only_then():
    a = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    base = cache.content_hash({"k": 1}, [a])
    assert cache.content_hash({"k": 1}, [a.copy()]) == base  # same content, another array
    assert cache.content_hash({"k": 1}, [np.asfortranarray(a)]) == base  # memory layout does not count
    b = a.copy()
    b[2, 1] = np.nextafter(b[2, 1], np.float32(np.inf))
    others = [cache.content_hash({"k": 2}, [a]), cache.content_hash({"k": 1}, [b]),
              cache.content_hash({"k": 1}, [a.astype(np.float64)]), cache.content_hash({"k": 1}, [a.reshape(4, 5)]),
              cache.content_hash({"k": 1}, [a, None]), cache.content_hash({"k": 1}, []),
              cache.content_hash({"k": 1, "extra": None}, [a])]
    assert len({base, *others}) == len(others) + 1


def test_canonical_settings():
    arr = np.ones(3)
    c = cache.canonical({1: (np.float32(0.5), [arr]), "f": len})
    assert c["1"][0] == 0.5 and c["1"][1][0]["shape"] == [3] and c["f"].startswith("<built-in")
    assert json.dumps(c)  # JSON-able


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deep" / "a.txt"
    cache.write_text(path, "one")
    cache.write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["a.txt"]
    cache.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cache.atomic_write(path, fail)
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_arrays_round_trip_and_misses(tmp_path):
    path = tmp_path / "e.npz"
    assert cache.load_arrays(path) is None  # a miss, silently
    arrays = {"nat": np.arange(6, dtype=np.float32).reshape(3, 2), "adv": np.zeros((3, 2), np.float32)}
    assert cache.save_arrays(path, arrays)
    got = cache.load_arrays(path, {"nat": (3, 2), "adv": (3, 2)}, dtype=np.float32)
    assert set(got) == {"nat", "adv"} and np.array_equal(got["nat"], arrays["nat"])
    for shapes, dtype in [({"nat": (3, 2)}, None), ({"nat": (3, 2), "adv": (2, 3)}, None),
                          ({"nat": (3, 2), "adv": (3, 2)}, np.float64)]:
        with pytest.warns(RuntimeWarning, match="unreadable widget cache"):
            assert cache.load_arrays(path, shapes, dtype=dtype, label="widget cache") is None
    path.write_bytes(b"not an npz file")
    with pytest.warns(RuntimeWarning, match="unreadable cache file"):
        assert cache.load_arrays(path) is None


def test_a_failed_write_is_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="could not write"):
        assert not cache.save_arrays(blocker / "sub" / "e.npz", {"a": np.zeros(1)})


def test_cache_imports_nothing_of_featgap():
    tree = ast.parse(Path(cache.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.startswith("featgap")]


def test_atomic_write_gives_the_file_the_umask_mode_not_0600(tmp_path):
    """A run file on a shared teaching server must be readable as any file the user writes (mkstemp makes 0600)."""
    import os

    from featgap.cache import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", lambda tmp: open(tmp, "w").write("{}"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
