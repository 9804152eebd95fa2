"""Embeddings of natural + adversarial features: PCA exactness, pairing, cache, t-SNE, UMAP, sequences.

UMAP tests are marked slow; umap-learn compiles its numba code on first use. That compiled code
is kept in the persistent numba cache (``NUMBA_CACHE_DIR``, default ``~/.cache/featgap/numba``) so
that later runs of this file are quick, while every embedding cache lives under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from featgap.errors import FeatgapError
from featgap.probes import COLUMNS
from featgap.probes import embedding as embed_mod
from featgap.probes.embedding import Embedding, embed, embed_sequence

# Read before any test patches FEATGAP_CACHE: the JIT cache should outlive the test run.
PERSISTENT_NUMBA = os.environ.get("NUMBA_CACHE_DIR") or str(embed_mod.numba_cache_dir())


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    """No test writes embeddings outside tmp_path."""
    monkeypatch.setenv("FEATGAP_CACHE", str(tmp_path / "featgap-cache"))
    monkeypatch.setenv("NUMBA_CACHE_DIR", PERSISTENT_NUMBA)


def features(n: int = 60, d: int = 12, seed: int = 0, offset: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Natural features and adversarial ones close to them, row by row."""
    rng = np.random.default_rng(seed)
    nat = rng.normal(size=(n, d)).astype(np.float32)
    adv = (nat + offset * rng.normal(size=(n, d))).astype(np.float32)
    return nat, adv


def fresh_python(code: str, env_extra: dict[str, str] | None = None) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return its stdout."""
    env = {**os.environ, "FEATGAP_PROGRESS": "0", "NUMBA_CACHE_DIR": PERSISTENT_NUMBA, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


# ---------------------------------------------------------------- import cost
def test_import_does_not_load_umap():
    out = fresh_python("import sys, featgap.probes.embedding\n"
                       "print(sorted(m for m in sys.modules if m.split('.')[0] in ('umap', 'pynndescent')))")
    assert out.strip() == "[]"


# ---------------------------------------------------------------- PCA and pairing
def test_pca_equals_numpy_svd_projection_up_to_sign():
    nat, adv = features(n=80, d=10)
    emb = embed(nat, adv, method="pca", n_components=3, cache=False)
    x = np.concatenate([nat, adv]).astype(np.float64)
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    expected = xc @ vt[:3].T
    got = np.concatenate([emb.nat, emb.adv]).astype(np.float64)
    for j in range(3):
        sign = np.sign(got[:, j] @ expected[:, j])
        np.testing.assert_allclose(sign * got[:, j], expected[:, j], rtol=1e-4, atol=1e-5)
    assert emb.nat.dtype == np.float32 and emb.method == "pca"
    assert emb.params == {"n_components": 3, "seed": 0, "svd_solver": "full"}


def test_pairing_is_kept_row_by_row():
    rng = np.random.default_rng(1)
    nat = rng.normal(size=(100, 16)).astype(np.float32)
    adv = nat + 1e-4 * rng.normal(size=nat.shape).astype(np.float32)
    emb = embed(nat, adv, method="pca", n_components=4, cache=False)
    dist = np.linalg.norm(emb.adv[:, None, :] - emb.nat[None, :, :], axis=2)
    assert (dist.argmin(axis=1) == np.arange(100)).all()
    np.testing.assert_allclose(emb.shift(), np.linalg.norm(emb.adv - emb.nat, axis=1), rtol=1e-6)
    coords, kind, pair = emb.points()
    assert coords.shape == (200, 4)
    assert list(kind[:100]) == ["nat"] * 100 and list(kind[100:]) == ["adv"] * 100
    np.testing.assert_array_equal(coords[kind == "adv"][pair[kind == "adv"] == 7], emb.adv[7:8])
    # the same points as a tidy DataFrame: one row per point, the pair index in "sample"
    t = emb.table
    assert list(t.columns) == ["sample", "input", "dim1", "dim2", "dim3", "dim4"] and len(t) == 200
    assert set(t.columns) - {"dim2", "dim3", "dim4"} <= set(COLUMNS)
    np.testing.assert_array_equal(t[t["input"] == "adv"][["dim1", "dim2", "dim3", "dim4"]].to_numpy(), emb.adv)
    assert (t.groupby("sample").size() == 2).all()


def test_torch_and_numpy_inputs_agree():
    nat, adv = features()
    a = embed(nat, adv, method="pca", cache=False)
    b = embed(torch.from_numpy(nat), torch.from_numpy(adv), method="pca", cache=False)
    np.testing.assert_array_equal(a.nat, b.nat)
    np.testing.assert_array_equal(a.adv, b.adv)


def test_natural_features_alone():
    nat, _ = features()
    emb = embed(nat, method="pca", cache=False)
    assert emb.adv is None and emb.nat.shape == (60, 2)
    coords, kind, pair = emb.points()
    assert coords.shape == (60, 2) and set(kind) == {"nat"} and (pair == np.arange(60)).all()
    assert len(emb.table) == 60 and set(emb.table["input"]) == {"nat"}
    with pytest.raises(FeatgapError, match="no adversarial points"):
        emb.shift()


# ---------------------------------------------------------------- the on-disk cache
def test_cache_hit_returns_identical_arrays_fast(tmp_path, monkeypatch):
    nat, adv = features()
    first = embed(nat, adv, method="pca", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def no_fit(*args, **kwargs):
        raise AssertionError("a cache hit must not fit again")

    monkeypatch.setattr(embed_mod, "_fit", no_fit)
    start = time.perf_counter()
    again = embed(nat, adv, method="pca", cache_dir=tmp_path)
    assert time.perf_counter() - start < 0.5
    np.testing.assert_array_equal(first.nat, again.nat)
    np.testing.assert_array_equal(first.adv, again.adv)
    assert again.params == first.params and again.method == "pca"


def test_changing_a_param_or_one_value_misses_the_cache(tmp_path):
    nat, adv = features()
    embed(nat, adv, method="pca", cache_dir=tmp_path)
    embed(nat, adv, method="pca", cache_dir=tmp_path, whiten=True)
    embed(nat, adv, method="pca", n_components=3, cache_dir=tmp_path)
    changed = adv.copy()
    changed[5, 3] += 1e-3
    embed(nat, changed, method="pca", cache_dir=tmp_path)
    embed(nat.astype(np.float64), adv, method="pca", cache_dir=tmp_path)  # dtype is part of the key
    embed(nat, None, method="pca", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 6
    embed(nat, adv, method="pca", cache_dir=tmp_path, whiten=True)
    assert len(list(tmp_path.glob("*.npz"))) == 6


def test_corrupt_cache_file_is_recomputed(tmp_path):
    nat, adv = features()
    good = embed(nat, adv, method="pca", cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not an npz file")
    with pytest.warns(RuntimeWarning, match="unreadable embedding cache"):
        again = embed(nat, adv, method="pca", cache_dir=tmp_path)
    np.testing.assert_array_equal(good.nat, again.nat)
    with np.load(path) as npz:  # rewritten, readable again
        np.testing.assert_array_equal(npz["nat"], good.nat)
    np.savez(path, nat=np.zeros((3, 2), np.float32))  # readable, but the wrong contents
    with pytest.warns(RuntimeWarning):
        again = embed(nat, adv, method="pca", cache_dir=tmp_path)
    np.testing.assert_array_equal(good.adv, again.adv)


def test_cache_false_writes_nothing_and_default_dir_follows_env(tmp_path):
    nat, adv = features()
    embed(nat, adv, method="pca", cache=False)
    default = tmp_path / "featgap-cache" / "embeddings"  # FEATGAP_CACHE, set by the autouse fixture
    assert embed_mod.default_cache_dir() == default
    assert not default.exists()
    embed(nat, adv, method="pca")
    assert len(list(default.glob("*.npz"))) == 1
    assert not list(default.glob("*.tmp"))


# ---------------------------------------------------------------- t-SNE
def test_tsne_shape_and_determinism():
    nat, adv = features(n=50, d=8)
    a = embed(nat, adv, method="tsne", seed=3, cache=False, max_iter=250)
    b = embed(nat, adv, method="tsne", seed=3, cache=False, max_iter=250)
    c = embed(nat, adv, method="tsne", seed=3, cache=False, max_iter=250, init="random")
    d = embed(nat, adv, method="tsne", seed=4, cache=False, max_iter=250, init="random")
    assert a.nat.shape == (50, 2) and a.adv.shape == (50, 2)
    np.testing.assert_array_equal(a.nat, b.nat)
    np.testing.assert_array_equal(a.adv, b.adv)
    assert not np.allclose(c.nat, d.nat)  # the seed matters where t-SNE draws at random (not for init='pca')
    with pytest.raises(FeatgapError, match="perplexity"):
        embed(nat[:10], adv[:10], method="tsne", cache=False)
    with pytest.raises(FeatgapError, match="at most 3"):
        embed(nat, adv, method="tsne", n_components=4, cache=False)


# ---------------------------------------------------------------- UMAP
@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """Two Gaussian blobs 10σ apart in 20-D (100 samples each, adversarial = nat + noise), UMAP-embedded."""
    rng = np.random.default_rng(0)
    centre = np.zeros(20)
    centre[0] = 10.0
    nat = np.concatenate([rng.normal(size=(100, 20)), centre + rng.normal(size=(100, 20))]).astype(np.float32)
    adv = (nat + 0.3 * rng.normal(size=nat.shape)).astype(np.float32)
    labels = np.repeat([0, 1], 100)
    folder = tmp_path_factory.mktemp("umap")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NUMBA_CACHE_DIR", PERSISTENT_NUMBA)
        emb = embed(nat, adv, method="umap", cache_dir=folder / "cache")
    np.save(folder / "nat.npy", nat)
    np.save(folder / "adv.npy", adv)
    np.save(folder / "emb_nat.npy", emb.nat)
    return {"nat": nat, "adv": adv, "labels": labels, "emb": emb, "folder": folder}


@pytest.mark.slow
def test_umap_keeps_separated_blobs_separated(blobs):
    emb: Embedding = blobs["emb"]
    coords, kind, pair = emb.points()
    labels = blobs["labels"][pair]
    dist = np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=2)
    np.fill_diagonal(dist, np.inf)
    accuracy = (labels[dist.argmin(axis=1)] == labels).mean()  # leave-one-out 1-NN
    assert accuracy >= 0.95
    assert emb.nat.shape == (200, 2) and emb.adv.shape == (200, 2)
    assert emb.params == {"n_components": 2, "seed": 0, "n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean"}


@pytest.mark.slow
def test_umap_is_reproducible_with_a_seed(blobs):
    again = embed(blobs["nat"], blobs["adv"], method="umap", cache=False)
    np.testing.assert_array_equal(again.nat, blobs["emb"].nat)
    np.testing.assert_array_equal(again.adv, blobs["emb"].adv)


@pytest.mark.slow
def test_umap_cache_hit_in_a_fresh_process_is_fast_and_skips_umap(blobs):
    folder = blobs["folder"]
    code = f"""
import json, sys, time
import numpy as np
from featgap.probes.embedding import embed
folder = {str(folder)!r}
nat, adv = np.load(folder + "/nat.npy"), np.load(folder + "/adv.npy")
start = time.perf_counter()
emb = embed(nat, adv, method="umap", cache_dir=folder + "/cache")
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "same": bool(np.array_equal(emb.nat, np.load(folder + "/emb_nat.npy"))),
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("umap", "pynndescent", "numba"))}}))
"""
    result = json.loads(fresh_python(code).strip().splitlines()[-1])
    assert result["same"]
    assert result["loaded"] == []
    assert result["seconds"] < 0.5


# ---------------------------------------------------------------- several checkpoints
def test_embed_sequence_pca_is_one_fixed_projection(tmp_path):
    a_nat, a_adv = features(seed=0)
    b_nat, b_adv = features(seed=1)
    embs = embed_sequence([(a_nat, a_adv), (b_nat, b_adv), (a_nat, a_adv)], method="pca", cache_dir=tmp_path)
    assert len(embs) == 3 and all(e.method == "pca" for e in embs)
    np.testing.assert_array_equal(embs[0].nat, embs[2].nat)
    np.testing.assert_array_equal(embs[0].adv, embs[2].adv)
    assert not np.allclose(embs[0].nat, embs[1].nat)
    # the one projection is the PCA of every checkpoint's rows together
    x = np.concatenate([a_nat, a_adv, b_nat, b_adv, a_nat, a_adv]).astype(np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    expected = (np.concatenate([b_nat, b_adv]) - mean) @ vt[:2].T
    got = np.concatenate([embs[1].nat, embs[1].adv])
    for j in range(2):
        sign = np.sign(got[:, j] @ expected[:, j])
        np.testing.assert_allclose(sign * got[:, j], expected[:, j], rtol=1e-4, atol=1e-5)
    cached = embed_sequence([(a_nat, a_adv), (b_nat, b_adv), (a_nat, a_adv)], method="pca", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    np.testing.assert_array_equal(cached[1].adv, embs[1].adv)
    nat_only = embed_sequence([a_nat, (b_nat, None)], method="pca", cache=False)
    assert [e.adv for e in nat_only] == [None, None]


@pytest.mark.slow
def test_embed_sequence_aligned_umap_one_embedding_per_checkpoint():
    a_nat, a_adv = features(n=50, seed=0)
    b_nat = a_nat + 0.2 * np.random.default_rng(2).normal(size=a_nat.shape).astype(np.float32)
    b_adv = b_nat + 0.05
    embs = embed_sequence([(a_nat, a_adv), (b_nat, b_adv)], method="aligned_umap", cache=False)
    assert len(embs) == 2
    for e in embs:
        assert isinstance(e, Embedding) and e.method == "aligned_umap"
        assert e.nat.shape == (50, 2) and e.adv.shape == (50, 2) and np.isfinite(e.nat).all()
        assert e.params["alignment_regularisation"] == 1e-2


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, message", [
    (lambda n, a: embed(n, a[:-1], method="pca"), "shape"),
    (lambda n, a: embed(n, a[:, :-1], method="pca"), "shape"),
    (lambda n, a: embed(n, a, method="isomap"), "unknown embedding method"),
    (lambda n, a: embed(n, a, method="aligned_umap"), "embed_sequence"),
    (lambda n, a: embed(n, a, method="pca", n_components=0), "n_components"),
    (lambda n, a: embed(n, a, method="pca", n_components=2.5), "n_components"),
    (lambda n, a: embed(n, a, method="pca", n_components=100), "at most"),
    (lambda n, a: embed(np.where(np.arange(12) == 3, np.nan, n), a, method="pca"), "non-finite"),
    (lambda n, a: embed(n, np.full_like(a, np.inf), method="pca"), "non-finite"),
    (lambda n, a: embed(n[None], a[None], method="pca"), "2-D"),
    (lambda n, a: embed(n.astype(str), a, method="pca"), "real numbers"),
    (lambda n, a: embed(n, a, method="pca", seed=-1), "seed"),
    (lambda n, a: embed(n, a, method="pca", no_such_option=1), "no_such_option"),
    (lambda n, a: embed(n, a, method="pca", random_state=1), "seed="),
    (lambda n, a: embed_sequence([(n, a)], method="umap"), "unknown sequence method"),
    (lambda n, a: embed_sequence([], method="pca"), "non-empty"),
    (lambda n, a: embed_sequence([(n, a), (n[:-1], a[:-1])], method="pca"), "same samples"),
    (lambda n, a: embed_sequence([(n, a), (n, None)], method="pca"), "for all checkpoints"),
    (lambda n, a: embed_sequence([(n, a), (n[:, :5], a[:, :5])], method="pca"), "same dimension"),
    (lambda n, a: embed_sequence([(n, a)], method="aligned_umap"), "at least 2"),
])
def test_bad_input_is_a_one_line_featgap_error(call, message):
    nat, adv = features()
    with pytest.raises(FeatgapError, match=message) as info:
        call(nat, adv)
    assert "\n" not in str(info.value)
