"""Geometry of a feature space: where natural and adversarial features lie, and how smooth the map is.

The feature-space measures take pooled feature vectors ``(N, D)`` — torch tensors or NumPy
arrays, as :func:`~featgap.probes.extract.extract_features` returns them — and compute in
float64 on the CPU; :func:`local_lipschitz` takes a model and images instead. Accuracies and
rates are fractions in **[0, 1]** throughout this module. Labels are 1-D integer class indices
``0 … K−1``.

**Class-centroid misalignment.** The centroid of class ``k`` is its mean natural feature
``c_k = mean{f(x_i) : y_i = k}``. A sample is *misaligned* when its feature lies strictly nearer
(Euclidean) another class's centroid than its own::

    misaligned_i  =  min_{k ≠ y_i} ‖f_i − c_k‖₂  <  ‖f_i − c_{y_i}‖₂

— the nearest-class-centre rule of the neural-collapse analysis (Papyan, Han & Donoho 2020,
PNAS) applied to natural and to adversarial features. A tie counts as aligned. The adversarial
rate measures how often an attack carries a feature over into another class's region.

**Alignment and uniformity** (Wang & Isola 2020, ICML, arXiv 2005.10242), on L2-normalised
features ``ẑ = f / ‖f‖₂`` (a zero vector stays zero: it has no direction)::

    alignment   =  E_i ‖ẑ_i − ẑ′_i‖₂^α                         pairs = natural/adversarial of one sample
    uniformity  =  log E_{i<j} exp(−t ‖ẑ_i − ẑ_j‖₂²)           over all distinct pairs

Alignment lies in [0, 2^α] (0: the attack does not move the direction of any feature);
uniformity lies in [−4t, 0] (lower: features spread more evenly over the sphere).

**kNN accuracy**: each test feature takes the majority label of its ``k`` nearest training
features (Euclidean; on L2-normalised features by default, which ranks neighbours by cosine
similarity) — a plain version of the nonparametric monitor of representation quality of Wu et
al. 2018 (CVPR), whose votes are weighted by similarity; here every neighbour votes once.
**Linear-probe accuracy**: a logistic regression trained on frozen, standardised features
(Alain & Bengio 2016, arXiv 1610.01644). Both ask how much of the label a feature space keeps.

**Local Lipschitzness** (Yang et al. 2020, "A Closer Look at Accuracy vs. Robustness",
NeurIPS, arXiv 2003.02460), per sample, of the map ``f`` from images to a layer's output::

    L(x)  =  max_{x′ ∈ B_ε(x) ∩ [0,1]}  ‖f(x) − f(x′)‖₁ / ‖x − x′‖∞

estimated from below by projected sign-gradient ascent on the ratio itself. Robust models have
a small ``L``: a bounded input change moves their features little.

Typical use::

    f, f_adv = extract_features(model, x)["pool"], extract_features(model, x_adv)["pool"]
    centroid_misalignment(f, f_adv, y)["adv"]        # share of adversarial features in another class's region
    alignment(f, f_adv), uniformity(f)
    local_lipschitz(model, x[:500], y[:500], eps=8 / 255, seed=0)["lipschitz"].mean()

The feature-space measures are metric helpers: tensors or arrays in, a float or tensors out.
:func:`local_lipschitz` (per sample) and :func:`geometry_table` (per layer) take a model and
images, like every probe, and return DataFrames.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from featgap.attacks import NORMS, default_step_size, eval_mode, lipschitz_ratio, pgd_best
from featgap.errors import FeatgapError
from featgap.probes.adversarial import Attack, with_adversarial
from featgap.probes.extract import (LayerReader, as_float_images, check_images, extract_features,
                                    model_device)
from featgap.probes.frames import concat, frame

ArrayLike = Any  # a torch tensor or a NumPy array (anything np.asarray takes)


# ----------------------------------------------------------------------------- input checks

def _as_tensor(a: ArrayLike, name: str) -> torch.Tensor:
    if torch.is_tensor(a):
        return a.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError, RuntimeError):
        raise FeatgapError(f"{name} must be a numeric torch tensor or NumPy array") from None


def _features(a: ArrayLike, name: str) -> torch.Tensor:
    """An ``(N, D)`` float64 CPU tensor; higher-dimensional inputs are flattened per sample."""
    t = _as_tensor(a, name)
    if t.ndim < 2:
        raise FeatgapError(f"{name} must be an (N, D) array of feature vectors, got shape {tuple(t.shape)}")
    if t.is_complex():
        raise FeatgapError(f"{name} must hold real numbers, got dtype {t.dtype}")
    t = t.flatten(1).double()
    if not torch.isfinite(t).all():
        raise FeatgapError(f"{name} contains NaN or infinite values")
    return t


def _labels(y: ArrayLike, n: int, name: str) -> torch.Tensor:
    """A 1-D int64 tensor of ``n`` non-negative class indices."""
    t = _as_tensor(y, name)
    if t.ndim != 1 or len(t) != n:
        raise FeatgapError(f"{name} must be a 1-D array of {n} class indices (one per feature vector), "
                           f"got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise FeatgapError(f"{name} must be integer class indices, got dtype {t.dtype}")
    t = t.long()
    if n and int(t.min()) < 0:
        raise FeatgapError(f"{name} must be non-negative class indices, got {int(t.min())}")
    return t


def _nonempty(f: torch.Tensor, name: str) -> None:
    if len(f) == 0:
        raise FeatgapError(f"{name} is empty: pass at least one feature vector")


def _same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise FeatgapError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise FeatgapError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _count(value: int, name: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise FeatgapError(f"{name} must be an integer ≥ {least}, got {value!r}")
    return int(value)


def _unit(f: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; a zero row stays zero."""
    return F.normalize(f, p=2.0, dim=1, eps=1e-12)


# ----------------------------------------------------------------------------- class centroids

def class_centroids(features: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> torch.Tensor:
    """Mean feature per class (the class centroids of the neural-collapse analysis).

    ``c_k = mean{f_i : y_i = k}``. Every class ``0 … K−1`` needs at least one sample: an empty
    class has no centroid, and leaving its row out would shift the rows of the classes after
    it, so it is an error rather than skipped. Computed in float64; returned as float64 when
    ``features`` are float64, else float32. A metric helper on feature arrays.

    Arguments:
        features (Tensor | ndarray): features.
        labels (Tensor | ndarray): their classes.
        num_classes (int | None): K. (Default: ``max(labels) + 1``)

    Shape:
        - features: ``(N, D)``. labels: ``(N,)``.
        - output: ``(K, D)`` tensor; row ``k`` is the centroid of class ``k``.

    Examples::
        >>> c = class_centroids(extract_features(model, x_train)["pool"], y_train, num_classes=10)
        >>> centroid_misalignment(f, f_adv, y, centroids=c)["adv"]
    """
    f = _features(features, "features")
    y = _labels(labels, len(f), "labels")
    _nonempty(f, "features")
    top = int(y.max())
    if num_classes is None:
        k = top + 1
    else:
        k = _count(num_classes, "num_classes")
        if top >= k:
            raise FeatgapError(f"labels go up to {top}, but num_classes is {k}")
    counts = torch.bincount(y, minlength=k)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise FeatgapError(f"class {empty[0]} has no sample, so it has no centroid "
                           f"({len(empty)} of {k} classes are empty): pass features of every class")
    sums = torch.zeros(k, f.shape[1], dtype=torch.float64).index_add_(0, y, f)
    centroids = sums / counts.unsqueeze(1).double()
    is64 = features.dtype == torch.float64 if torch.is_tensor(features) else np.asarray(features).dtype == np.float64
    return centroids if is64 else centroids.float()


def _misaligned(f: torch.Tensor, y: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    # direct differences (not the ‖a‖² + ‖b‖² − 2a·b shortcut) so that exact ties stay exact
    d = torch.cdist(f, centroids, compute_mode="donot_use_mm_for_euclid_dist")
    own = d.gather(1, y.unsqueeze(1)).squeeze(1)
    others = d.scatter(1, y.unsqueeze(1), math.inf)
    return others.min(dim=1).values < own


def centroid_misalignment(f_nat: ArrayLike, f_adv: ArrayLike, labels: ArrayLike,
                          centroids: ArrayLike | None = None) -> dict[str, Any]:
    """Share of samples whose feature lies strictly nearer another class's centroid than its own.

    ``misaligned_i = min_{k ≠ y_i} ‖f_i − c_k‖₂ < ‖f_i − c_{y_i}‖₂`` — the nearest-class-centre
    rule of Papyan, Han & Donoho 2020 (PNAS), for natural and for adversarial features against
    the same centroids. A feature exactly as far from another centroid as from its own counts
    as aligned; with one class nothing is misaligned. A metric helper on feature arrays.

    Arguments:
        f_nat, f_adv (Tensor | ndarray): features of natural inputs and of their adversarial examples.
        labels (Tensor | ndarray): true classes.
        centroids (Tensor | ndarray | None): class centroids. (Default: :func:`class_centroids`
            of ``f_nat`` and ``labels``, so every class needs a sample)

    Shape:
        - f_nat, f_adv: ``(N, D)``. labels: ``(N,)``. centroids: ``(K, D)``.
        - output: ``{"nat": rate, "adv": rate}`` (floats in [0, 1]) and the per-sample boolean
          tensors ``"nat_misaligned"``, ``"adv_misaligned"`` ``(N,)``.

    Examples::
        >>> m = centroid_misalignment(f, f_adv, y)
        >>> m["adv"] - m["nat"]            # how many features the attack carries into another class's region
    """
    a, b = _features(f_nat, "f_nat"), _features(f_adv, "f_adv")
    _same_shape(a, b, "f_nat and f_adv")
    _nonempty(a, "f_nat")
    y = _labels(labels, len(a), "labels")
    c = class_centroids(a, y) if centroids is None else _features(centroids, "centroids")
    if c.shape[1] != a.shape[1]:
        raise FeatgapError(f"centroids have {c.shape[1]} dimensions but the features have {a.shape[1]}")
    if int(y.max()) >= len(c):
        raise FeatgapError(f"labels go up to {int(y.max())}, but there are only {len(c)} centroids")
    nat, adv = _misaligned(a, y, c), _misaligned(b, y, c)
    return {"nat": nat.double().mean().item(), "adv": adv.double().mean().item(),
            "nat_misaligned": nat, "adv_misaligned": adv}


# ----------------------------------------------------------------------------- alignment and uniformity

def alignment(f_nat: ArrayLike, f_adv: ArrayLike, alpha: float = 2.0) -> float:
    """Alignment of natural/adversarial pairs (Wang & Isola 2020, ICML, arXiv 2005.10242).

    ``alignment = E_i ‖ẑ_i − ẑ′_i‖₂^α`` on L2-normalised features ``ẑ = f / ‖f‖₂`` (a zero vector
    stays zero), in [0, 2^α]; 0 when the attack does not move the direction of any feature.
    A metric helper on feature arrays.

    Arguments:
        f_nat, f_adv (Tensor | ndarray): features of natural inputs and of their adversarial examples.
        alpha (float): the exponent α > 0. (Default: 2)

    Shape:
        - f_nat, f_adv: ``(N, D)``.
        - output: a float.

    Examples::
        >>> f, f_adv = extract_features(model, x)["pool"], extract_features(model, x_adv)["pool"]
        >>> alignment(f, f_adv)
    """
    a, b = _features(f_nat, "f_nat"), _features(f_adv, "f_adv")
    _same_shape(a, b, "f_nat and f_adv")
    _nonempty(a, "f_nat")
    alpha = _positive(alpha, "alpha")
    return (_unit(a) - _unit(b)).norm(dim=1).pow(alpha).mean().item()


def uniformity(features: ArrayLike, t: float = 2.0, *, max_samples: int | None = 5000, seed: int = 0) -> float:
    """Uniformity of a feature set on the unit sphere (Wang & Isola 2020, ICML, arXiv 2005.10242).

    ``uniformity = log E_{i<j} exp(−t ‖ẑ_i − ẑ_j‖₂²)`` over all distinct pairs of L2-normalised
    features, in [−4t, 0]; lower: features spread more evenly. The number of pairs grows as
    N²/2 (12.5 M for N = 5000), so above ``max_samples`` samples a random subset of that size is
    used, drawn with ``seed`` (the same subset on every call). Computed as a log-sum-exp, stable
    for large t. A metric helper on feature arrays.

    Arguments:
        features (Tensor | ndarray): features, at least two.
        t (float): the temperature t > 0. (Default: 2)
        max_samples (int | None): subsample above this many; ``None`` uses every sample. (Default: 5000)
        seed (int): seeds the subsample. (Default: 0)

    Shape:
        - features: ``(N, D)``.
        - output: a float.

    Examples::
        >>> uniformity(f), uniformity(f_adv)
        (-3.1, -2.4)
    """
    f = _features(features, "features")
    t = _positive(t, "t")
    if len(f) < 2:
        raise FeatgapError(f"uniformity needs at least 2 feature vectors (a pair), got {len(f)}")
    if max_samples is not None and len(f) > _count(max_samples, "max_samples", least=2):
        keep = torch.randperm(len(f), generator=torch.Generator().manual_seed(seed))[:max_samples]
        f = f[keep]
    sq = torch.pdist(_unit(f)).pow(2)
    return (torch.logsumexp(-t * sq, dim=0) - math.log(len(sq))).item()


# ----------------------------------------------------------------------------- kNN and linear probes

def _probe_data(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                test_labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xtr, xte = _features(train_features, "train_features"), _features(test_features, "test_features")
    ytr = _labels(train_labels, len(xtr), "train_labels")
    yte = _labels(test_labels, len(xte), "test_labels")
    _nonempty(xtr, "train_features")
    _nonempty(xte, "test_features")
    if xtr.shape[1] != xte.shape[1]:
        raise FeatgapError(f"train features have {xtr.shape[1]} dimensions but test features {xte.shape[1]}")
    return xtr.numpy(), ytr.numpy(), xte.numpy(), yte.numpy()


def knn_accuracy(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                 test_labels: ArrayLike, k: int = 5, *, normalize: bool = True) -> float:
    """Accuracy of a k-nearest-neighbour vote on frozen features (after Wu et al. 2018, CVPR).

    Each test feature takes the majority label of its ``k`` nearest training features
    (Euclidean, every neighbour votes once). With ``normalize=True`` train and test features
    are L2-normalised first, so the neighbours are those of highest cosine similarity and a
    feature's length does not count. A tied vote goes to the smallest label (scikit-learn's
    rule). A metric helper on feature arrays.

    Arguments:
        train_features, train_labels: the reference set the neighbours come from.
        test_features, test_labels: the features scored.
        k (int): neighbours. (Default: 5)
        normalize (bool): L2-normalise first. (Default: True)

    Shape:
        - train_features: ``(M, D)``, train_labels ``(M,)``; test_features ``(N, D)``, test_labels ``(N,)``.
        - output: a float in [0, 1].

    Examples::
        >>> knn_accuracy(f_train, y_train, f_adv, y)        # how much of the label adversarial features keep
    """
    from sklearn.neighbors import KNeighborsClassifier

    xtr, ytr, xte, yte = _probe_data(train_features, train_labels, test_features, test_labels)
    k = _count(k, "k")
    if k > len(xtr):
        raise FeatgapError(f"k={k} neighbours asked for, but there are only {len(xtr)} training features")
    if normalize:
        xtr, xte = _unit(torch.from_numpy(xtr)).numpy(), _unit(torch.from_numpy(xte)).numpy()
    knn = KNeighborsClassifier(n_neighbors=k, metric="euclidean", algorithm="brute", n_jobs=1)
    return float(knn.fit(xtr, ytr).score(xte, yte))


def linear_probe_accuracy(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                          test_labels: ArrayLike, *, C: float = 1.0, max_iter: int = 1000, seed: int = 0) -> float:
    """Test accuracy of a logistic regression trained on frozen features (Alain & Bengio 2016, arXiv 1610.01644).

    The features are standardised (mean 0, variance 1 per dimension, with statistics of the
    training set only), then scikit-learn's ``LogisticRegression`` (L2 penalty of strength
    ``1/C``, L-BFGS, multinomial for more than two classes) is fitted. The training labels need
    at least two classes. A metric helper on feature arrays.

    Arguments:
        train_features, train_labels: what the probe is fitted on.
        test_features, test_labels: what it is scored on.
        C (float): inverse regularisation strength. (Default: 1.0)
        max_iter (int): L-BFGS iterations. (Default: 1000)
        seed (int): the regression's ``random_state``. (Default: 0)

    Shape:
        - train_features: ``(M, D)``, train_labels ``(M,)``; test_features ``(N, D)``, test_labels ``(N,)``.
        - output: a float in [0, 1].

    Examples::
        >>> linear_probe_accuracy(f_train, y_train, f, y), linear_probe_accuracy(f_train, y_train, f_adv, y)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, ytr, xte, yte = _probe_data(train_features, train_labels, test_features, test_labels)
    C = _positive(C, "C")
    max_iter = _count(max_iter, "max_iter")
    if len(np.unique(ytr)) < 2:
        raise FeatgapError("train_labels hold a single class: a linear probe needs at least two")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    return float(probe.fit(xtr, ytr).score(xte, yte))


# ----------------------------------------------------------------------------- local Lipschitzness

def _default_layer(model: nn.Module) -> str:
    names = getattr(model, "layer_names", None)
    if not names:
        raise FeatgapError(f"{type(model).__name__} has no layer_names: pass layers=... (a module name or 'logits')")
    return names[-1]


def _check_images(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim < 2:
        raise FeatgapError(f"x must be a batch of inputs (N, ...), got shape {tuple(x.shape)}")
    x = x.detach()
    if len(x) and x.dtype != torch.uint8 and (not x.is_floating_point() or float(x.min()) < 0.0
                                              or float(x.max()) > 1.0):
        raise FeatgapError("x must be images in [0, 1] (float) or in 0…255 (uint8)")
    return x


def local_lipschitz(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None = None, *,
                    layers: str | Sequence[str] | None = None, eps: float | None = None, steps: int = 10,
                    step_size: float | None = None, norm: str = "linf", pool: str = "avg", batch_size: int = 250,
                    seed: int | None = None) -> pd.DataFrame:
    """Per-sample empirical local Lipschitz constant of the map from images to a layer's output.

    Yang et al. 2020, "A Closer Look at Accuracy vs. Robustness" (NeurIPS, arXiv 2003.02460)::

        L(x)  =  max_{x′ ∈ B_ε(x) ∩ [0,1]}  ‖f(x) − f(x′)‖₁ / ‖x − x′‖        (‖·‖∞, or ‖·‖₂ for norm="l2")

    Robust models have a small ``L``: a bounded input change moves their features little. The
    maximum is sought by an attack on the ratio itself (:func:`featgap.attacks.pgd_best` with
    :func:`featgap.attacks.lipschitz_ratio`): ``steps`` of sign-gradient ascent
    (normalised-gradient for L2) from a uniform random start in the ball, each step projected
    back onto the ball and [0, 1]; the best ratio seen per sample (at the start and after every
    step) is returned, a lower bound of the true maximum. Given ``x_adv``, the probe reports
    the ratio at those points instead (no ascent): e.g. how far PGD's examples move the layer
    per unit of input change.

    Differences from Yang et al.'s code, which starts at ``x + 0.001·N(0, 1)`` and reports the
    last iterate: the start is uniform in the ball, the best iterate is kept, and ``‖x − x′‖∞``
    is differentiated through ``max`` (one coordinate of largest change gets the gradient;
    ``amax`` would spread it over every tied coordinate and stall the ascent on the faces of
    the ball: on a linear map it then finds about 0.94 of the exact maximum, against 0.98–1.0
    here — the lower end for inputs of only a few dozen values).

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits (a featgap model, or any ``nn.Module``).
        x (Tensor): images, float in [0, 1] or uint8.
        y (Tensor): labels (reported in the ``label`` column).
        x_adv (Tensor | None): points at which to take the ratio; ``None`` runs the ascent. (Default: None)
        layers (str | list[str] | None): whose output ``f`` is: module names, ``"logits"`` (as in
            Yang et al.) or graph nodes; one ascent per layer. (Default: the last of
            ``model.layer_names`` — ``"pool"``, the features, for featgap models)
        eps (float): radius of the ball in pixel units; needed for the ascent.
        steps (int): ascent steps (0: the random start only). (Default: 10)
        step_size (float | None): α. (Default: 2.5·ε/steps)
        norm (str): the ball and the denominator, ``"linf"`` or ``"l2"``; the numerator is always
            the L1 norm. (Default: ``"linf"``)
        pool (str): how a spatial output becomes one vector, ``"avg"`` or ``"flatten"``. (Default: ``"avg"``)
        batch_size (int): samples per ascent batch. (Default: 250)
        seed (int | None): seeds the random start (on the CPU, afresh for each layer); the result
            is reproducible for the same seed and batch_size. ``None`` uses torch's global RNG.

    Shape:
        - x, x_adv: ``(N, C, H, W)``. y: ``(N,)``.
        - output: DataFrame of ``N × len(layers)`` rows; columns ``sample, label, layer,
          lipschitz`` (float32). The model runs in eval mode (restored afterwards) and the
          gradient is taken with respect to the input only, so parameters' ``.grad`` stay untouched.

    Examples::
        >>> df = local_lipschitz(model, x[:500], y[:500], eps=8 / 255, seed=0)
        >>> df.groupby("layer")["lipschitz"].mean()
    """
    if norm not in NORMS:
        raise FeatgapError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")
    names = [_default_layer(model)] if layers is None else layers
    names = [names] if isinstance(names, str) else list(names)
    if not names or not all(isinstance(n, str) for n in names):
        raise FeatgapError(f"layers must be a layer name or a list of them, got {layers!r}")
    batch_size = _count(batch_size, "batch_size")
    x = _check_images(x)
    if len(x) != len(y):
        raise FeatgapError(f"x has {len(x)} images but y has {len(y)} labels")
    if isinstance(getattr(model, "in_channels", None), int):  # a featgap model: its channels and classes too
        check_images(model, x, y, allow_empty=True)
    if x_adv is None:
        if eps is None:
            raise FeatgapError("give eps (the radius of the ball, in pixel units) or x_adv")
        eps = _positive(eps, "eps")
        steps = _count(steps, "steps", least=0)
        alpha = default_step_size(eps, steps) if step_size is None else _positive(step_size, "step_size")
    else:
        x_adv = _check_images(x_adv)
        if x_adv.shape != x.shape:
            raise FeatgapError(f"x_adv has shape {tuple(x_adv.shape)}; x has {tuple(x.shape)}")
    n = len(x)
    labels = torch.as_tensor(y).cpu().numpy()
    device = model_device(model)
    parts = []
    names = LayerReader(model, names, pool).layers  # unknown layers fail here, before any ascent
    for name in names:
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        with LayerReader(model, [name], pool) as read, eval_mode(model):

            def f(t: torch.Tensor, name: str = name) -> torch.Tensor:
                return read(t)[name]

            values = []
            for i in range(0, n, batch_size):
                xb = as_float_images(x[i:i + batch_size]).to(device)
                with torch.no_grad():
                    f_nat = f(xb)
                ratio = lipschitz_ratio(xb, f_nat, norm)
                if x_adv is None:
                    _, best = pgd_best(f, xb, None, objective=ratio, eps=eps, steps=steps, step_size=alpha,
                                       norm=norm, generator=generator)
                else:
                    with torch.no_grad():
                        best = ratio(f, as_float_images(x_adv[i:i + batch_size]).to(device))
                values.append(best.float().cpu())
            parts.append(frame({"sample": np.arange(n), "label": labels, "layer": np.full(n, name, dtype=object),
                                "lipschitz": torch.cat(values) if values else np.zeros(0, np.float32)}))
    return concat(parts)


# ----------------------------------------------------------------------------- all of it, per layer

def geometry_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None = None, *,
                   layers: str | Sequence[str] | None = None, eps: float | None = None, steps: int = 10,
                   norm: str = "linf", attack: Attack | None = None, pool: str = "avg",
                   reference: tuple[torch.Tensor, torch.Tensor] | None = None, k: int = 5,
                   batch_size: int = 500, seed: int | None = 0) -> pd.DataFrame:
    """Every feature-space measure of this module at each layer: a set-level table, one row per layer.

    Per layer, on the pooled features of ``x`` and ``x_adv``: the class-centroid misalignment
    rates (Papyan, Han & Donoho 2020), Wang & Isola's alignment and uniformity (arXiv
    2005.10242) and — with a ``reference`` set of natural training images — the kNN and
    linear-probe accuracies (Alain & Bengio 2016, arXiv 1610.01644) of classifiers fitted on the
    reference features and scored on the natural and on the adversarial features of ``x``. With
    a reference, the class centroids come from it too; without one, from ``x`` itself. (These
    are measures of a whole set, so the table has one row per layer, not per sample.)

    Arguments:
        model (nn.Module): classifier taking images in [0, 1].
        x (Tensor): natural images. y (Tensor): labels (every class needs a sample when the
            centroids come from ``x``).
        x_adv (Tensor | None): adversarial examples; made with PGD at ``eps`` when ``None``.
        layers (str | list[str] | None): layers to measure at. (Default: ``model.layer_names``)
        eps, steps, norm, attack, seed: the attack (see :func:`adversarial_examples`).
        pool (str): ``"avg"`` or ``"flatten"``. (Default: ``"avg"``)
        reference (tuple | None): natural ``(x_train, y_train)`` to fit the classifiers on. (Default: None)
        k (int): neighbours of the kNN vote. (Default: 5)
        batch_size (int): images per forward pass. (Default: 500)

    Shape:
        - x, x_adv: ``(N, C, H, W)``. y: ``(N,)``.
        - output: DataFrame of ``len(layers)`` rows; columns ``layer, misaligned_nat,
          misaligned_adv, alignment, uniformity_nat, uniformity_adv`` and, with a reference,
          ``knn_nat, knn_adv, linear_nat, linear_adv`` (float64; rates and accuracies in [0, 1]).

    Examples::
        >>> g = geometry_table(model, x, y, eps=0.3, reference=train.stratified_subset(1000, 0).tensors())
        >>> g.set_index("layer")[["misaligned_adv", "knn_adv"]]
    """
    names = LayerReader(model, layers, pool).layers
    x_adv = with_adversarial(model, x, y, x_adv, eps=eps, steps=steps, norm=norm, attack=attack,
                             batch_size=batch_size, seed=seed)
    nat = extract_features(model, x, names, pool=pool, batch_size=batch_size, desc="natural features")
    adv = extract_features(model, x_adv, names, pool=pool, batch_size=batch_size, desc="adversarial features")
    ref = None
    if reference is not None:
        ref = extract_features(model, reference[0], names, pool=pool, batch_size=batch_size, desc="reference features")
    rows: dict[str, list] = {}
    for name in names:
        f, fa = nat[name], adv[name]
        centroids = class_centroids(ref[name], reference[1]) if ref is not None else None
        mis = centroid_misalignment(f, fa, y, centroids)
        row = {"layer": name, "misaligned_nat": mis["nat"], "misaligned_adv": mis["adv"],
               "alignment": alignment(f, fa), "uniformity_nat": uniformity(f), "uniformity_adv": uniformity(fa)}
        if ref is not None:
            row.update(knn_nat=knn_accuracy(ref[name], reference[1], f, y, k),
                       knn_adv=knn_accuracy(ref[name], reference[1], fa, y, k),
                       linear_nat=linear_probe_accuracy(ref[name], reference[1], f, y),
                       linear_adv=linear_probe_accuracy(ref[name], reference[1], fa, y))
        for key, value in row.items():
            rows.setdefault(key, []).append(value)
    return frame({k_: np.asarray(v, dtype=object) if k_ == "layer" else np.asarray(v, dtype=np.float64)
                  for k_, v in rows.items()})
