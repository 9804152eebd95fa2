"""Low-dimensional maps of natural and adversarial features, with the pairing kept.

A model maps each input to a feature vector of tens to thousands of dimensions. To *see*
the feature gap we draw those vectors in 2-D (or 3-D), natural and adversarial together::

    emb = embed(f_nat, f_adv, method="umap")     # (N, D) each → emb.nat, emb.adv: (N, 2)
    emb.shift()                                   # per sample: how far the attack moved it on the map
    coords, kind, pair = emb.points()             # stacked rows for a scatter plot

Both sets are fitted in **one** space: the rows ``[f_nat; f_adv]`` are stacked, embedded
together and split again, so ``emb.adv[i]`` is the adversarial example of ``emb.nat[i]``.
(Two separate fits would give two unrelated coordinate systems.)

Methods:

* ``"pca"`` — the linear projection onto the top principal axes of the stacked, centred
  features (scikit-learn). Exact, deterministic and fast; distances are faithful but crowded.
* ``"umap"`` — UMAP (umap-learn; McInnes et al. 2018, arXiv 1802.03426): keeps each point's
  neighbourhood, so clusters separate. Defaults ``n_neighbors=15, min_dist=0.1``.
* ``"tsne"`` — t-SNE (scikit-learn, Barnes-Hut, at most 3 components): also neighbourhood
  preserving; distances between clusters mean little.

Only the *neighbourhoods* of a UMAP or t-SNE map are meaningful: a long ``shift()`` means the
adversarial point landed among other points, not a distance in feature space.

**Several checkpoints.** :func:`embed_sequence` maps the same samples at several epochs so the
maps can be compared frame by frame: ``"pca"`` fits one projection on every checkpoint's rows
together and applies it to each; ``"aligned_umap"`` uses umap-learn's ``AlignedUMAP``, which
ties each sample's point in one slice to its point in the neighbouring slices.

**Reproducibility and speed.** ``seed`` (default 0) fixes every random choice, so a call
returns the same coordinates every time. For UMAP that costs parallelism: a fixed
``random_state`` makes umap-learn run single-threaded. On a 2-core machine that costs little;
``seed=None`` runs multi-threaded and non-reproducibly, and such results are not cached.

umap-learn takes seconds to import and compiles its numba functions on first use (tens of
seconds in a new environment), so this module imports it only inside the functions that run
UMAP. Before that import, ``NUMBA_CACHE_DIR`` defaults to ``<featgap cache>/numba`` so that
compiled code persists on disk even where site-packages is read-only; pynndescent marks its
functions ``cache=True``, but umap-learn marks only one of its own, so featgap also switches
on numba's disk cache for umap-learn's functions after importing it. For fewer than 4,096
points umap-learn computes every pairwise distance itself, one Python-level call per pair;
featgap passes it the distance matrix computed by scikit-learn instead (``metric="precomputed"``,
for euclidean, cosine and manhattan distances), which is the same graph a few seconds sooner.

Results are cached on disk by a content hash (sha256 of the input arrays' bytes, dtype and
shape, the method, every parameter and the library versions) as ``<cache_dir>/<hash>.npz``,
written atomically (the shared disk cache, :mod:`featgap.cache`). The default folder is ``$FEATGAP_CACHE/embeddings``, else
``~/.cache/featgap/embeddings``. A repeated call returns from the cache in milliseconds
without importing umap; an unreadable cache file is ignored (with a warning) and replaced.
``cache=False`` neither reads nor writes.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from featgap import cache as fg_cache
from featgap.errors import FeatgapError

METHODS = ("umap", "pca", "tsne")
SEQUENCE_METHODS = ("aligned_umap", "pca")
UMAP_DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean"}
ALIGNED_DEFAULTS = {**UMAP_DEFAULTS, "alignment_regularisation": 1e-2, "alignment_window_size": 3}
TSNE_DEFAULTS = {"perplexity": 30.0, "init": "pca", "learning_rate": "auto"}
PCA_DEFAULTS = {"svd_solver": "full"}
# umap-learn computes all pairwise distances itself below this many rows, calling a numba
# distance once per pair from Python (seconds for 2,000 rows); featgap hands it the same
# matrix computed with BLAS instead (metric="precomputed") for metrics scikit-learn knows.
SMALL_DATA = 4096
_DENSE_METRICS = ("euclidean", "l2", "cosine", "manhattan", "l1", "cityblock")
_FORMAT = "featgap-embedding-v1"

FeatureArray = Any
"""A ``(N, D)`` torch tensor or NumPy array (anything ``np.asarray`` accepts)."""


@dataclass(frozen=True, eq=False)
class Embedding:
    """Coordinates of natural points and of their adversarial partners in one map.

    ``nat`` and ``adv`` are float32 arrays of shape ``(N, k)``; row ``i`` of ``adv`` is the
    adversarial example of row ``i`` of ``nat`` (``adv`` is ``None`` when only natural features
    were embedded). ``params`` records every setting used, defaults included.
    """

    nat: np.ndarray
    adv: np.ndarray | None
    method: str
    params: dict = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        return int(self.nat.shape[1])

    def shift(self) -> np.ndarray:
        """Per pair, the Euclidean distance from the natural to the adversarial point: ``(N,)``."""
        if self.adv is None:
            raise FeatgapError("this embedding has no adversarial points: pass f_adv to embed()")
        return np.linalg.norm(self.adv.astype(np.float64) - self.nat, axis=1)

    @property
    def table(self) -> pd.DataFrame:
        """The points as a tidy DataFrame, natural rows first: ``sample, input, dim1, dim2[, dim3 …]``.

        ``input`` is ``"nat"`` or ``"adv"``; ``sample`` pairs a natural point with its
        adversarial partner, e.g. ``px.scatter(emb.table, x="dim1", y="dim2", color="input",
        hover_name="sample")``.
        """
        coords, kind, pair = self.points()
        return pd.DataFrame({"sample": pair, "input": kind.astype(object),
                             **{f"dim{j + 1}": coords[:, j] for j in range(coords.shape[1])}})

    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Everything as one table for plotting: ``(coords (M, k), kind (M,), pair (M,))``.

        Natural rows come first, then adversarial ones (``M = 2N``, or ``N`` without ``adv``);
        ``kind`` is ``"nat"`` or ``"adv"`` and ``pair`` the sample index shared by partners,
        e.g. ``px.scatter(x=coords[:, 0], y=coords[:, 1], color=kind, hover_name=pair)``.
        """
        n = len(self.nat)
        if self.adv is None:
            return self.nat, np.full(n, "nat"), np.arange(n)
        coords = np.concatenate([self.nat, self.adv])
        return coords, np.repeat(np.array(["nat", "adv"]), n), np.tile(np.arange(n), 2)


# ---------------------------------------------------------------- public functions
def embed(f_nat: FeatureArray, f_adv: FeatureArray | None = None, *, method: str = "umap", n_components: int = 2,
          seed: int | None = 0, cache: bool = True, cache_dir: str | Path | None = None, **params: Any) -> Embedding:
    """Map natural features and their adversarial partners into ``n_components`` dimensions, in one space.

    The rows ``[f_nat; f_adv]`` are stacked, embedded by one fit and split again, so
    ``emb.adv[i]`` is the adversarial partner of ``emb.nat[i]``. Methods: ``"pca"`` (linear,
    exact), ``"umap"`` (McInnes et al. 2018, arXiv 1802.03426) and ``"tsne"`` (van der Maaten &
    Hinton 2008); only the neighbourhoods of a UMAP or t-SNE map are meaningful. A feature-level
    function: extract the features first (:func:`~featgap.probes.extract_features`). Cached on
    disk by content hash (:mod:`featgap.cache`).

    Arguments:
        f_nat (Tensor | ndarray): features of natural inputs.
        f_adv (Tensor | ndarray | None): features of their adversarial examples, row by row. (Default: None)
        method (str): ``"umap"``, ``"pca"`` or ``"tsne"``. (Default: ``"umap"``)
        n_components (int): dimensions of the map (t-SNE: at most 3). (Default: 2)
        seed (int | None): fixes the result; ``None``: UMAP runs multi-threaded, results vary and
            are not cached. (Default: 0)
        cache (bool): read and write the on-disk cache. (Default: True)
        cache_dir (path | None): its folder. (Default: :func:`default_cache_dir`)
        **params: passed to the estimator (``umap.UMAP``, ``sklearn.decomposition.PCA`` or
            ``sklearn.manifold.TSNE``), e.g. ``n_neighbors=30`` or ``perplexity=50``.

    Shape:
        - f_nat, f_adv: ``(N, D)``.
        - output: an :class:`Embedding`: ``nat``, ``adv`` ``(N, k)`` float32 arrays, ``table`` a
          DataFrame of ``2N`` rows (``sample, input, dim1 … dimk``), ``params`` every setting.

    Examples::
        >>> emb = embed(feats["pool"], feats_adv["pool"], method="pca")
        >>> px.scatter(emb.table, x="dim1", y="dim2", color="input", hover_name="sample")
    """
    if method not in METHODS:
        raise FeatgapError(f"unknown embedding method {method!r}; choose one of: {', '.join(METHODS)}"
                           + (" (aligned_umap is for embed_sequence)" if method == "aligned_umap" else ""))
    nat, adv = _check_pair(f_nat, f_adv)
    k = _check_components(n_components, method, nat, adv)
    _check_seed(seed, params)
    settings = {"n_components": k, "seed": seed, **_defaults(method), **params}
    cacheable = cache and (seed is not None or method == "pca")
    path = _cache_path(cache_dir, "embed", [nat, adv], method, settings) if cacheable else None
    if path is not None:
        hit = _read_cache(path, {"nat": (len(nat), k)} | ({"adv": (len(nat), k)} if adv is not None else {}))
        if hit is not None:
            return Embedding(hit["nat"], hit.get("adv"), method, settings)
    x = _stack([nat, adv])
    y = _fit([x], method, k, seed, _estimator_params(settings))[0]
    emb = Embedding(y[:len(nat)], y[len(nat):] if adv is not None else None, method, settings)
    if path is not None:
        _write_cache(path, {"nat": emb.nat} | ({"adv": emb.adv} if emb.adv is not None else {}))
    return emb


def embed_sequence(features_list: Sequence[Any], *, method: str = "aligned_umap", n_components: int = 2,
                   seed: int | None = 0, cache: bool = True, cache_dir: str | Path | None = None,
                   **params: Any) -> list[Embedding]:
    """Embed the same samples at several checkpoints into maps that stay comparable frame by frame.

    ``"aligned_umap"`` uses umap-learn's ``AlignedUMAP``, which ties sample ``i`` of one
    checkpoint to sample ``i`` of the next (natural and adversarial rows alike); ``"pca"`` fits
    one PCA on the rows of *all* checkpoints together and applies it to each: a fixed linear
    frame, so identical features get identical coordinates and every movement is real.

    Arguments:
        features_list (list): one entry per checkpoint, each ``(f_nat, f_adv)`` (or ``f_nat``
            alone, or ``(f_nat, None)``); every checkpoint holds the same N samples in the same order.
        method (str): ``"aligned_umap"`` (extra settings ``alignment_regularisation``, 1e-2:
            stronger keeps points stiller, and ``alignment_window_size``, 3) or ``"pca"`` (needs
            the same D throughout). (Default: ``"aligned_umap"``)
        n_components, seed, cache, cache_dir, params: as for :func:`embed`.

    Shape:
        - each f_nat, f_adv: ``(N, D)`` (D may change between checkpoints for aligned_umap).
        - output: one :class:`Embedding` per checkpoint, in order.

    Examples::
        >>> maps = embed_sequence([(f[e], f_adv[e]) for e in epochs], method="pca")
        >>> pd.concat([m.table.assign(epoch=e) for e, m in zip(epochs, maps)])   # for an animated scatter
    """
    if method not in SEQUENCE_METHODS:
        raise FeatgapError(f"unknown sequence method {method!r}; choose one of: {', '.join(SEQUENCE_METHODS)}")
    slices = _check_sequence(features_list, method)
    n = len(slices[0][0])
    has_adv = slices[0][1] is not None
    k = _check_components(n_components, "umap" if method == "aligned_umap" else "pca", *slices[0])
    _check_seed(seed, params)
    settings = {"n_components": k, "seed": seed, **_defaults(method), **params}
    cacheable = cache and (seed is not None or method == "pca")
    arrays = [a for pair in slices for a in pair]
    path = _cache_path(cache_dir, "sequence", arrays, method, settings) if cacheable else None
    shapes = {f"{kind}_{i}": (n, k) for i in range(len(slices)) for kind in (("nat", "adv") if has_adv else ("nat",))}
    hit = _read_cache(path, shapes) if path is not None else None
    if hit is None:
        ys = _fit([_stack(pair) for pair in slices], method, k, seed, _estimator_params(settings))
        hit = {}
        for i, y in enumerate(ys):
            hit[f"nat_{i}"] = y[:n]
            if has_adv:
                hit[f"adv_{i}"] = y[n:]
        if path is not None:
            _write_cache(path, hit)
    return [Embedding(hit[f"nat_{i}"], hit.get(f"adv_{i}"), method, settings) for i in range(len(slices))]


def default_cache_dir() -> Path:
    """Where embeddings are cached: ``$FEATGAP_CACHE/embeddings``, else ``~/.cache/featgap/embeddings``."""
    return fg_cache.folder("embeddings")


# ---------------------------------------------------------------- input checks
def _as_array(x: FeatureArray, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor, without importing torch here
        x = x.detach().cpu()
        try:
            x = x.numpy()
        except TypeError:  # bfloat16 and other dtypes NumPy lacks
            x = x.float().numpy()
    try:
        a = np.asarray(x)
    except Exception as err:  # noqa: BLE001 - anything that is not array-like
        raise FeatgapError(f"{name} is not an array ({type(x).__name__}): {err}") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise FeatgapError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 2:
        raise FeatgapError(f"{name} must be 2-D (N samples, D features), got shape {tuple(a.shape)}"
                           + ("; pool feature maps first (featgap.probes.extract.pool_features)" if a.ndim > 2 else ""))
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise FeatgapError(f"{name} is empty (shape {tuple(a.shape)})")
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise FeatgapError(f"{name} holds {bad} non-finite values (NaN or inf); embed finite features only")
    return a


def _check_pair(f_nat: FeatureArray, f_adv: FeatureArray | None, where: str = ""
                ) -> tuple[np.ndarray, np.ndarray | None]:
    nat = _as_array(f_nat, f"f_nat{where}")
    if f_adv is None:
        return nat, None
    adv = _as_array(f_adv, f"f_adv{where}")
    if adv.shape != nat.shape:
        raise FeatgapError(f"f_adv{where} has shape {tuple(adv.shape)} but f_nat{where} has {tuple(nat.shape)}: "
                           "give one adversarial row per natural row")
    return nat, adv


def _check_components(n_components: int, method: str, nat: np.ndarray, adv: np.ndarray | None) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise FeatgapError(f"n_components must be a positive integer, got {n_components!r}")
    rows = len(nat) * (1 if adv is None else 2)
    if method == "pca" and n_components > min(rows, nat.shape[1]):
        raise FeatgapError(f"PCA of {rows} points in {nat.shape[1]} dimensions has at most "
                           f"{min(rows, nat.shape[1])} components, not {n_components}")
    if method == "tsne" and n_components > 3:
        raise FeatgapError(f"t-SNE (Barnes-Hut) embeds into at most 3 dimensions, not {n_components}")
    if method in ("umap", "tsne") and rows < 4:
        raise FeatgapError(f"{method} needs at least 4 points, got {rows}")
    return int(n_components)


def _check_seed(seed: int | None, params: dict) -> None:
    if "random_state" in params:
        raise FeatgapError("pass seed= rather than random_state= (featgap hands the seed to the estimator)")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise FeatgapError(f"seed must be a non-negative integer or None, got {seed!r}")


def _check_sequence(features_list: Sequence[Any], method: str) -> list[tuple[np.ndarray, np.ndarray | None]]:
    if isinstance(features_list, (str, bytes)) or not isinstance(features_list, Sequence) or not features_list:
        raise FeatgapError("features_list must be a non-empty list with one (f_nat, f_adv) entry per checkpoint")
    slices = []
    for i, entry in enumerate(features_list):
        if isinstance(entry, (tuple, list)):
            if len(entry) not in (1, 2):
                raise FeatgapError(f"features_list[{i}] must be (f_nat, f_adv), got {len(entry)} items")
            nat, adv = entry[0], entry[1] if len(entry) == 2 else None
        else:
            nat, adv = entry, None
        slices.append(_check_pair(nat, adv, f"[{i}]"))
    first_nat, first_adv = slices[0]
    for i, (nat, adv) in enumerate(slices[1:], start=1):
        if len(nat) != len(first_nat):
            raise FeatgapError(f"checkpoint {i} has {len(nat)} samples but checkpoint 0 has {len(first_nat)}: "
                               "embed the same samples at every checkpoint")
        if (adv is None) != (first_adv is None):
            raise FeatgapError(f"checkpoint {i} {'lacks' if adv is None else 'has'} adversarial features but "
                               "checkpoint 0 does not: give f_adv for all checkpoints or for none")
        if method == "pca" and nat.shape[1] != first_nat.shape[1]:
            raise FeatgapError(f"checkpoint {i} has {nat.shape[1]} features but checkpoint 0 has "
                               f"{first_nat.shape[1]}: one PCA needs the same dimension throughout")
    if method == "aligned_umap" and len(slices) < 2:
        raise FeatgapError("aligned_umap needs at least 2 checkpoints; use embed() for one")
    return slices


# ---------------------------------------------------------------- fitting
def _defaults(method: str) -> dict:
    return dict({"umap": UMAP_DEFAULTS, "aligned_umap": ALIGNED_DEFAULTS, "pca": PCA_DEFAULTS,
                 "tsne": TSNE_DEFAULTS}[method])


def _estimator_params(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in ("n_components", "seed")}


def _stack(pair: Sequence[np.ndarray | None]) -> np.ndarray:
    """``[f_nat; f_adv]`` as one float32 array (float64 stays float64)."""
    parts = [p for p in pair if p is not None]
    dtype = np.float64 if any(p.dtype == np.float64 for p in parts) else np.float32
    return np.concatenate([p.astype(dtype, copy=False) for p in parts])


def _fit(xs: list[np.ndarray], method: str, k: int, seed: int | None, params: dict) -> list[np.ndarray]:
    """One coordinate array (float32) per input array, from one fit."""
    try:
        if method == "pca":
            ys = _fit_pca(xs, k, seed, params)
        elif method == "tsne":
            ys = [_fit_tsne(xs[0], k, seed, params)]
        elif method == "umap":
            ys = [_fit_umap(xs[0], k, seed, params)]
        else:
            ys = _fit_aligned_umap(xs, k, seed, params)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise FeatgapError(f"{method}: {str(err).splitlines()[0]} (check the extra parameters)") from None
        raise
    except (ValueError, np.linalg.LinAlgError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FeatgapError(f"{method} failed on {len(xs[0])} points: {first}") from None
    return [np.ascontiguousarray(y, dtype=np.float32) for y in ys]


def _fit_pca(xs: list[np.ndarray], k: int, seed: int | None, params: dict) -> list[np.ndarray]:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=k, random_state=seed, **params).fit(np.concatenate(xs).astype(np.float64))
    return [pca.transform(x.astype(np.float64)) for x in xs]


def _fit_tsne(x: np.ndarray, k: int, seed: int | None, params: dict) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = params.get("perplexity", TSNE_DEFAULTS["perplexity"])
    if perplexity >= len(x):
        raise FeatgapError(f"t-SNE perplexity ({perplexity}) must be below the number of points ({len(x)}): "
                           "pass a smaller perplexity=")
    return TSNE(n_components=k, random_state=seed, **params).fit_transform(x)


def _umap_input(x: np.ndarray, params: dict) -> tuple[np.ndarray, dict]:
    """Hand umap-learn a BLAS-computed distance matrix for small data (see :data:`SMALL_DATA`)."""
    metric = params.get("metric", "euclidean")
    if (len(x) < SMALL_DATA and isinstance(metric, str) and metric in _DENSE_METRICS
            and not params.get("metric_kwds") and not params.get("force_approximation_algorithm")):
        from sklearn.metrics import pairwise_distances

        d = pairwise_distances(x.astype(np.float64), metric=metric)
        np.fill_diagonal(d, 0.0)
        return np.maximum(d, 0.0), {**params, "metric": "precomputed"}
    return x, params


def _fit_umap(x: np.ndarray, k: int, seed: int | None, params: dict) -> np.ndarray:
    umap = _import_umap()
    data, params = _umap_input(x, params)
    threads = {"n_jobs": 1} if seed is not None and "n_jobs" not in params else {}
    with _quiet_umap():
        return umap.UMAP(n_components=k, random_state=seed, **threads, **params).fit_transform(data)


def _fit_aligned_umap(xs: list[np.ndarray], k: int, seed: int | None, params: dict) -> list[np.ndarray]:
    umap = _import_umap()
    prepared = [_umap_input(x, params) for x in xs]
    identity = {i: i for i in range(len(xs[0]))}  # row i is the same sample (nat or adv) in every slice
    model = umap.AlignedUMAP(n_components=k, random_state=seed, **prepared[0][1])
    with _quiet_umap():
        model.fit([data for data, _ in prepared], relations=[identity] * (len(xs) - 1))
    return [np.asarray(y) for y in model.embeddings_]


@contextmanager
def _quiet_umap() -> Iterator[None]:
    """Hide umap-learn's notices about choices made on purpose here (seeded ⇒ one job; precomputed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"n_jobs value .* overridden")
        warnings.filterwarnings("ignore", message="using precomputed metric")
        yield


# ---------------------------------------------------------------- umap import and numba's disk cache
_UMAP_READY = False


def numba_cache_dir() -> Path:
    """Where numba keeps compiled code unless ``NUMBA_CACHE_DIR`` says otherwise: ``<featgap cache>/numba``."""
    return fg_cache.folder("numba")


def _import_umap() -> Any:
    """``import umap`` with numba's disk cache pointed at featgap's cache folder and turned on."""
    global _UMAP_READY
    if not _UMAP_READY:
        if "NUMBA_CACHE_DIR" not in os.environ:
            os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache_dir()))
            if "numba" in sys.modules:  # imported earlier: re-read the environment
                sys.modules["numba"].core.config.reload_config()
    import umap

    if not _UMAP_READY:
        _enable_umap_jit_cache()
        _UMAP_READY = True
    return umap


def _enable_umap_jit_cache() -> int:
    """Turn on numba's disk cache for umap-learn's own jitted functions; returns how many.

    umap-learn decorates them without ``cache=True`` (pynndescent uses it), so every new
    process would compile them again (~6 s for a first UMAP call on 2 cores). numba keys
    each cached entry on the source file's timestamp and the signature, so an upgrade of
    umap-learn invalidates it.
    """
    try:
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # a numba that moved these: run uncached
        return 0
    count = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "umap" or name.startswith("umap.")):
            continue
        for obj in list(vars(module).values()):
            if (isinstance(obj, Dispatcher) and isinstance(getattr(obj, "_cache", None), NullCache)
                    and getattr(obj.py_func, "__module__", "").startswith("umap")):
                try:
                    obj.enable_caching()
                    count += 1
                except Exception:  # noqa: BLE001 - no writable cache location: stay uncached
                    pass
    return count


# ---------------------------------------------------------------- the embedding cache (featgap.cache)
@lru_cache(maxsize=None)
def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def _versions(method: str) -> dict[str, str]:
    dists = ["scikit-learn"] + (["umap-learn", "pynndescent", "numba"] if "umap" in method else [])
    return {d: _version(d) for d in dists} | {"numpy": np.__version__}


def content_hash(kind: str, arrays: Sequence[np.ndarray | None], method: str, settings: dict) -> str:
    """sha256 over the arrays (bytes, dtype, shape), the method, all settings and library versions."""
    header = {"format": _FORMAT, "kind": kind, "method": method, "settings": settings, "versions": _versions(method)}
    return fg_cache.content_hash(header, arrays)


def _cache_path(cache_dir: str | Path | None, kind: str, arrays: Sequence[np.ndarray | None], method: str,
                settings: dict) -> Path:
    return fg_cache.folder("embeddings", cache_dir) / f"{content_hash(kind, arrays, method, settings)}.npz"


def _read_cache(path: Path, shapes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path`` if it exists and holds exactly ``shapes`` (float32); else ``None``."""
    return fg_cache.load_arrays(path, shapes, dtype=np.float32, label="embedding cache")


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fg_cache.save_arrays(path, arrays, label="embedding cache")
