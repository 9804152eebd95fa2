"""Checks for the tutorials' exercises: each compares your function with featgap's own on a fixed batch.

Use them as ``from featgap.exercises import check`` and then, at the end of an exercise cell,
``check.fgsm(my_fgsm)``. Every check

* calls your function the way its exercise says (the signature is in each docstring below);
* runs it on a **fixed** batch (the first 32 digits of a stratified mnist5k test subset,
  seed 0) and a fixed, seeded model, so two students get the same numbers;
* compares the result with featgap's own implementation, and when it differs, recognises the
  usual mistakes (a sign error, a missing clamp, the gap of the logits instead of the features,
  L2 where L∞ was asked, ...) and says which one, in words;
* returns a :class:`~featgap.exercises.Feedback` (``✓`` or ``✗`` and a message; ``bool`` is the
  verdict). A function that still raises ``NotImplementedError`` is reported as "not solved
  yet", so an unsolved notebook still runs top to bottom.

The checks, by tutorial:

====  =========================================  ==================================================
 01   :func:`fgsm`, :func:`gap`                  one-step attack; the L2 and L∞ feature gap
 02   :func:`confused_target`, :func:`fold_head`  AFD's confusing class ŷc; folding D1 into the head
 03   :func:`margin`, :func:`misalignment`       the logit margin; centroid misalignment
 04   :func:`wilson`, :func:`worst_case`,        a 95 % interval; per-image worst-case accuracy;
      :func:`pgd`                                 projected gradient descent
 05   :func:`safe_load`, :func:`features`        loading a checkpoint without running its code;
                                                 a layer's pooled output through a forward hook
====  =========================================  ==================================================
"""

from __future__ import annotations

import math
import pickle
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from featgap import data, models
from featgap.attacks import fgsm as library_fgsm
from featgap.attacks import pgd as library_pgd
from featgap.exercises.feedback import Feedback, call_student
from featgap.methods.afd import confusing_target
from featgap.plots.results import wilson_interval
from featgap.probes import centroid_misalignment, extract_features, pairwise_gap

BATCH = 32
"""Images in the fixed batch every check uses."""
EPS = 0.3
"""The L∞ radius of the checks (mnist5k's)."""
ATOL = 1e-5
"""Two pixel values or gaps within this count as equal."""


@lru_cache(maxsize=1)
def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The checks' batch: ``BATCH`` mnist5k test digits (stratified subset of 100, seed 0), in [0, 1]."""
    x, y = data.load("mnist5k", "test").stratified_subset(100, seed=0).tensors()
    return x[:BATCH].clone(), y[:BATCH].clone()


def reference_model() -> nn.Module:
    """A fixed smallcnn (seed 0, untrained: a check compares computations, not accuracies), in eval mode."""
    info = data.info("mnist5k")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = models.create("smallcnn", info.num_classes, info.in_channels, info.mean, info.std)
    return model.eval()


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂ CE(model(x), y) / ∂x, summed over the batch (each image's own gradient)."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g


def _tensor(exercise: str, out: Any, shape: tuple[int, ...], what: str) -> tuple[torch.Tensor | None, Feedback | None]:
    """``out`` as a float tensor of ``shape``, or the feedback saying what is wrong with it."""
    if not isinstance(out, torch.Tensor):
        return None, Feedback(exercise, False, f"expected a torch.Tensor ({what}, shape {tuple(shape)}), got "
                                               f"{type(out).__name__}")
    if out.numel() == 1 and math.prod(shape) > 1:
        return None, Feedback(exercise, False, f"you returned a single number; return one value per image "
                                               f"({what}, shape {tuple(shape)}), e.g. without the final .mean()")
    if tuple(out.shape) != tuple(shape):
        return None, Feedback(exercise, False, f"expected shape {tuple(shape)} ({what}), got {tuple(out.shape)}")
    return out.detach().float(), None


def _same(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), atol=atol, rtol=1e-4))


# ---------------------------------------------------------------------------------- tutorial 1
def fgsm(my_fgsm: Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]) -> Feedback:
    """Check your FGSM (Goodfellow et al. 2015) against :func:`featgap.attacks.fgsm`.

    Your function is called as ``my_fgsm(model, x, y, eps)`` with ``x`` ``(32, 1, 28, 28)`` in
    [0, 1] and ``eps = 0.3``, and must return ``clamp(x + eps · sign(∇ₓ CE(model(x), y)), 0, 1)``.

    Examples::
        >>> check.fgsm(lambda model, x, y, eps: featgap.attacks.fgsm(model, x, y, eps=eps))
        ✓ FGSM: ...
    """
    name = "FGSM"
    model = reference_model()
    x, y = fixed_batch()
    out, fb = call_student(name, my_fgsm, model, x.clone(), y.clone(), EPS, signature="my_fgsm(model, x, y, eps)")
    if fb is not None:
        return fb
    out, fb = _tensor(name, out, tuple(x.shape), "the adversarial images")
    if fb is not None:
        return fb
    ref = library_fgsm(model, x, y, eps=EPS)
    if _same(out, ref):
        return Feedback(name, True, f"matches featgap.attacks.fgsm on {len(x)} digits at ε = {EPS}: every pixel "
                                    f"moved by ε along the sign of the loss gradient, then clamped to [0, 1].")
    step = EPS * input_gradient(model, x, y).sign()
    if _same(out, (x - step).clamp(0, 1)):
        return Feedback(name, False, "sign error: you stepped *down* the loss (x − ε·sign(∇)). An attack climbs "
                                     "the loss: add ε·sign(∇ₓ loss).")
    if _same(out, x + step) or out.min() < -ATOL or out.max() > 1 + ATOL:
        return Feedback(name, False, f"some pixels are outside [0, 1] (min {out.min():.3f}, max {out.max():.3f}). "
                                     "Images live in [0, 1]: clamp the result, e.g. (x + step).clamp(0, 1).")
    moved = (out - x).abs().max().item()
    if moved > EPS + ATOL:
        return Feedback(name, False, f"a pixel moved by {moved:.3f}, more than ε = {EPS}: each pixel may move by at "
                                     "most ε (one step of exactly ε · sign(gradient)).")
    if moved < EPS / 2:
        return Feedback(name, False, f"the largest pixel change is only {moved:.4f}: did you step by the raw gradient "
                                     "instead of its sign? FGSM moves every pixel by ε · sign(∇ₓ loss).")
    wrong = ((out - ref).abs() > ATOL).float().mean().item()
    return Feedback(name, False, f"{100 * wrong:.1f}% of the pixels differ from featgap's FGSM. Check that the "
                                 "loss is cross-entropy of model(x) against the true labels y, that the gradient is "
                                 "taken with respect to the input x, and that the model is in eval mode.")


def _fgsm_pair() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = reference_model()
    x, y = fixed_batch()
    return model, x, library_fgsm(model, x, y, eps=EPS)


def gap(my_gap: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor], measure: str = "l2") -> Feedback:
    """Check your per-image feature gap against :func:`featgap.probes.pairwise_gap`.

    Your function is called as ``my_gap(model, x, x_adv)`` and must return one number per image,
    shape ``(32,)``: the distance between ``model.features(x)`` and ``model.features(x_adv)``
    (the 128-d pooled features), ``‖f(x) − f(x′)‖₂`` for ``measure="l2"``, ``max_i |f_i(x) − f_i(x′)|``
    for ``measure="linf"``.

    Examples::
        >>> check.gap(lambda m, x, xa: (m.features(x) - m.features(xa)).norm(dim=1))
        ✓ feature gap (L2): ...
    """
    names = {"l2": "L2", "linf": "L∞"}
    if measure not in names:
        raise ValueError(f"measure must be 'l2' or 'linf', got {measure!r}")
    name = f"feature gap ({names[measure]})"
    model, x, x_adv = _fgsm_pair()
    with torch.no_grad():
        f_nat, f_adv = model.features(x), model.features(x_adv)
        l_nat, l_adv = model(x), model(x_adv)
    out, fb = call_student(name, my_gap, model, x.clone(), x_adv.clone(), signature="my_gap(model, x, x_adv)")
    if fb is not None:
        return fb
    out, fb = _tensor(name, out, (len(x),), "one gap per image")
    if fb is not None:
        return fb
    feats, logits = pairwise_gap(f_nat, f_adv), pairwise_gap(l_nat, l_adv)
    if _same(out, feats[measure], atol=1e-4):
        return Feedback(name, True, f"matches featgap on {len(x)} FGSM pairs (mean {out.mean():.3f}).")
    other = "linf" if measure == "l2" else "l2"
    if _same(out, feats[other], atol=1e-4):
        return Feedback(name, False, f"you computed the {names[other]} distance, but the {names[measure]} gap was "
                                     f"asked: " + ("the largest absolute difference over the 128 features, "
                                                   "(a − b).abs().amax(dim=1)." if measure == "linf" else
                                                   "the Euclidean length, (a − b).norm(dim=1)."))
    if _same(out, logits[measure], atol=1e-4) or _same(out, logits[other], atol=1e-4):
        return Feedback(name, False, "you measured the gap between the logits (model(x)), not the features. Use "
                                     "model.features(x): the 128 numbers before the final linear layer.")
    if measure == "l2" and _same(out, feats["l2"] ** 2, atol=1e-3):
        return Feedback(name, False, "that is the squared distance; take the square root (or use .norm(dim=1)).")
    if _same(out, pairwise_gap(x, x_adv)[measure], atol=1e-4):
        return Feedback(name, False, "you measured the distance between the images; the gap is between their "
                                     "features, model.features(x) and model.features(x_adv).")
    return Feedback(name, False, f"your gaps (mean {out.mean():.3f}) differ from featgap's (mean "
                                 f"{feats[measure].mean():.3f}). One number per image: the {names[measure]} "
                                 "distance between the rows of model.features(x) and model.features(x_adv).")


# ---------------------------------------------------------------------------------- tutorial 2
def _logits_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of 32 samples, about half of them predicted wrongly, with their labels."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(BATCH, 10, generator=g) * 3
    y = torch.randint(0, 10, (BATCH,), generator=g)
    right = torch.arange(BATCH) % 2 == 0
    y = torch.where(right, logits.argmax(1), y)  # even rows predicted correctly
    return logits, y


def confused_target(my_target: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check your AFD confusing target ``ŷc`` against :func:`featgap.methods.afd.confusing_target`.

    Called as ``my_target(logits, y)`` with ``logits`` ``(32, 10)`` and labels ``y`` ``(32,)``;
    returns ``(32,)`` class indices: the predicted class when it is wrong, else the runner-up
    (the best class other than ``y``), so ``ŷc`` is never ``y``.
    """
    name = "confusing target ŷc"
    logits, y = _logits_and_labels()
    out, fb = call_student(name, my_target, logits.clone(), y.clone(), signature="my_target(logits, y)")
    if fb is not None:
        return fb
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH,):
        return Feedback(name, False, f"expected a tensor of {BATCH} class indices, got "
                                     f"{getattr(out, 'shape', type(out).__name__)}")
    out = out.long()
    ref = confusing_target(logits, y)
    if torch.equal(out, ref):
        return Feedback(name, True, f"matches AFD's ŷc on {BATCH} samples (half of them already misclassified).")
    right = logits.argmax(1) == y
    if (out == y).any():
        return Feedback(name, False, f"ŷc equals the true label on {int((out == y).sum())} samples; it must never "
                                     "be y. Where the prediction is right, take the runner-up instead.")
    if torch.equal(out, logits.argmax(1)):
        return Feedback(name, False, "you returned the prediction everywhere. Where it is already right it equals "
                                     "y; there ŷc is the runner-up (the largest logit among the other classes).")
    if torch.equal(out, logits.topk(2, 1).indices[:, 1]):
        return Feedback(name, False, "you returned the second-largest logit everywhere. Where the model is "
                                     "already wrong, ŷc is its prediction (the largest logit), not the runner-up.")
    return Feedback(name, False, f"ŷc differs on {int((out != ref).sum())} of {BATCH} samples "
                                 f"({int((out != ref)[right].sum())} predicted right, {int((out != ref)[~right].sum())} "
                                 "wrong). Hint: set the logit of y to −∞, then take the argmax.")


def fold_head(my_fold: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
              ) -> Feedback:
    """Check how you fold AFD's intrinsic map D1 into the linear head.

    Called as ``my_fold(W, b, D1)`` with the head's weight ``W`` ``(10, 128)``, its bias ``b``
    ``(10,)`` and ``D1`` ``(128, 128)``; returns ``(W′, b′)`` such that
    ``W′ z + b′ = W (D1 z) + b`` for every feature vector ``z``, i.e. ``W′ = W · D1``, ``b′ = b``.
    """
    name = "folding D1 into the head"
    g = torch.Generator().manual_seed(3)
    w, b, d1 = torch.randn(10, 128, generator=g), torch.randn(10, generator=g), torch.randn(128, 128, generator=g)
    out, fb = call_student(name, my_fold, w.clone(), b.clone(), d1.clone(), signature="my_fold(W, b, D1)")
    if fb is not None:
        return fb
    if not (isinstance(out, tuple | list) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        return Feedback(name, False, "return a pair of tensors (W_new, b_new)")
    w2, b2 = out
    if tuple(w2.shape) != (10, 128):
        return Feedback(name, False, f"W′ should have the head's shape (10, 128), got {tuple(w2.shape)}. The head "
                                     "computes W (D1 z): which product of W and D1 has that shape?")
    if not _same(b2, b):
        return Feedback(name, False, "the bias changed. D1 acts on z before the head, so the bias is added after "
                                     "it unchanged: b′ = b.")
    if _same(w2, w @ d1, atol=1e-3):
        return Feedback(name, True, "W′ = W·D1 and b′ = b: the exported plain model gives the student's logits.")
    if _same(w2, w @ d1.T, atol=1e-3):
        return Feedback(name, False, "you used D1 transposed. nn.Linear computes D1 z = z @ D1.weight.T, so "
                                     "W (D1 z) = (W @ D1) z.")
    return Feedback(name, False, "W′ z + b′ differs from W (D1 z) + b. Write W (D1 z) as one matrix times z.")


# ---------------------------------------------------------------------------------- tutorial 3
def margin(my_margin: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check your logit margin, the objective of margin-PGD (Carlini & Wagner 2017).

    Called as ``my_margin(logits, y)`` with ``logits`` ``(32, 10)``; returns ``(32,)``:
    ``max_{j ≠ y} ℓ_j − ℓ_y``, negative while the sample is classified correctly and positive
    once an attack has flipped it.
    """
    name = "logit margin"
    logits, y = _logits_and_labels()
    out, fb = call_student(name, my_margin, logits.clone(), y.clone(), signature="my_margin(logits, y)")
    if fb is not None:
        return fb
    out, fb = _tensor(name, out, (BATCH,), "one margin per sample")
    if fb is not None:
        return fb
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    ref = other - true
    if _same(out, ref):
        return Feedback(name, True, f"matches on {BATCH} samples: negative where the prediction is right "
                                    f"({int((ref < 0).sum())}), positive where it is wrong.")
    if _same(out, -ref):
        return Feedback(name, False, "sign flipped: the margin is (best other logit) − (true logit), so that an "
                                     "attack maximises it and a flipped sample has a positive margin.")
    if _same(out, logits.amax(1) - true):
        return Feedback(name, False, "your max includes the true class, so the margin is never negative. Take the "
                                     "max over j ≠ y: set the true logit to −∞ first.")
    return Feedback(name, False, "your margins differ from max_{j≠y} ℓ_j − ℓ_y; compute it on the raw logits "
                                 "(no softmax).")


def _feature_triple() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Natural and shifted features of 60 samples in 3 classes, some shifted into another class."""
    g = torch.Generator().manual_seed(4)
    y = torch.arange(60) % 3
    centres = torch.randn(3, 8, generator=g)
    f_nat = centres[y] + torch.randn(60, 8, generator=g)
    f_adv = f_nat + torch.randn(60, 8, generator=g) * 2.0
    return f_nat, f_adv, y


def misalignment(my_misalignment: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]) -> Feedback:
    """Check your centroid misalignment of adversarial features (:func:`featgap.probes.centroid_misalignment`).

    Called as ``my_misalignment(f_nat, f_adv, y)`` with features ``(60, 8)`` of 3 classes;
    returns a float in [0, 1]: the share of **adversarial** features strictly nearer (L2) another
    class's centroid than their own, the centroids being the class means of the **natural**
    features.
    """
    name = "centroid misalignment"
    f_nat, f_adv, y = _feature_triple()
    out, fb = call_student(name, my_misalignment, f_nat.clone(), f_adv.clone(), y.clone(),
                           signature="my_misalignment(f_nat, f_adv, y)")
    if fb is not None:
        return fb
    try:
        value = float(out)
    except (TypeError, ValueError):
        return Feedback(name, False, f"return one number (a share in [0, 1]), got {type(out).__name__}")
    ref = centroid_misalignment(f_nat, f_adv, y)
    if abs(value - ref["adv"]) < 1e-6:
        return Feedback(name, True, f"{value:.3f} of the adversarial features lie nearer another class's centre "
                                    f"(natural: {ref['nat']:.3f}).")
    if abs(value - 100 * ref["adv"]) < 1e-4:
        return Feedback(name, False, "that is a percentage; return the share in [0, 1] (divide by 100).")
    if abs(value - ref["nat"]) < 1e-6:
        return Feedback(name, False, "you measured the natural features; the question is where the adversarial "
                                     "ones (f_adv) fall relative to the natural centroids.")
    own = centroid_misalignment(f_adv, f_adv, y)["adv"]
    if abs(value - own) < 1e-6:
        return Feedback(name, False, "you took the centroids of the adversarial features; use the class means "
                                     "of the natural features, the reference the attack moves away from.")
    return Feedback(name, False, f"got {value:.4f}, expected a different share. For each adversarial feature, "
                                 "compare its distance to its own class's natural centroid with the nearest other "
                                 "centroid; count it when another is strictly nearer.")


# ---------------------------------------------------------------------------------- tutorial 4
WILSON_CASES = ((80, 100), (0, 150), (150, 150), (37, 200))


def wilson(my_wilson: Callable[[int, int], tuple[float, float]]) -> Feedback:
    """Check your 95 % Wilson score interval of an accuracy (:func:`featgap.plots.results.wilson_interval`).

    Called as ``my_wilson(correct, n)``; returns ``(lo, hi)`` as **fractions** in [0, 1], for
    ``correct`` right answers out of ``n``. With p̂ = correct/n and z = 1.96:
    ``(p̂ + z²/2n ± z·√(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n)``.
    """
    name = "Wilson 95% interval"
    for k, n in WILSON_CASES:
        out, fb = call_student(name, my_wilson, k, n, signature="my_wilson(correct, n)")
        if fb is not None:
            return fb
        try:
            lo, hi = (float(v) for v in out)
        except (TypeError, ValueError):
            return Feedback(name, False, f"return a pair (lo, hi), got {out!r}")
        ref = tuple(v / 100 for v in wilson_interval(100 * k / n, n))
        if abs(lo - ref[0]) < 1e-4 and abs(hi - ref[1]) < 1e-4:
            continue
        if abs(lo - 100 * ref[0]) < 1e-2 and abs(hi - 100 * ref[1]) < 1e-2:
            return Feedback(name, False, "those are percentages; return fractions in [0, 1].")
        p = k / n
        wald = 1.959964 * math.sqrt(p * (1 - p) / n)
        if abs(lo - (p - wald)) < 1e-4 and abs(hi - (p + wald)) < 1e-4:
            return Feedback(name, False, f"for {k}/{n} you returned p̂ ± z·√(p̂(1−p̂)/n), the Wald interval. It "
                                         "collapses to a point at 0 % and 100 % and can leave [0, 1]; the Wilson "
                                         "interval centres at (p̂ + z²/2n)/(1 + z²/n).")
        ref90 = tuple(v / 100 for v in wilson_interval(100 * k / n, n, z=1.644854))
        if abs(lo - ref90[0]) < 1e-4 and abs(hi - ref90[1]) < 1e-4:
            return Feedback(name, False, "that is the 90 % interval (z = 1.645); a 95 % interval uses z = 1.96.")
        return Feedback(name, False, f"for {k} right of {n} expected ({ref[0]:.4f}, {ref[1]:.4f}), got "
                                     f"({lo:.4f}, {hi:.4f}).")
    return Feedback(name, True, "matches featgap's interval on 80/100, 0/150, 150/150 and 37/200 "
                                "(never empty, always inside [0, 1]).")


def _masks() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    clean = torch.rand(200, generator=g) < 0.95
    return {"clean": clean, "PGD CE": torch.rand(200, generator=g) < 0.7,
            "PGD margin": torch.rand(200, generator=g) < 0.7, "AutoAttack": torch.rand(200, generator=g) < 0.65}


def worst_case(my_worst_case: Callable[[dict[str, torch.Tensor]], float]) -> Feedback:
    """Check your per-image worst-case accuracy over several attacks (how ``evaluate`` computes ``robust``).

    Called as ``my_worst_case(masks)`` with ``masks = {attack name: (200,) bool tensor}``,
    ``True`` where that attack left the image classified correctly (``"clean"`` included);
    returns the accuracy in **percent** counting an image only if it survived every attack.
    """
    name = "worst-case accuracy"
    masks = _masks()
    out, fb = call_student(name, my_worst_case, {k: v.clone() for k, v in masks.items()},
                           signature="my_worst_case(masks)")
    if fb is not None:
        return fb
    try:
        value = float(out)
    except (TypeError, ValueError):
        return Feedback(name, False, f"return one number (percent), got {type(out).__name__}")
    every = torch.stack(list(masks.values())).all(0)
    ref = 100 * every.float().mean().item()
    if abs(value - ref) < 1e-4:
        return Feedback(name, True, f"{value:.1f}% of 200 images survive all {len(masks)} attacks.")
    if abs(value - ref / 100) < 1e-6:
        return Feedback(name, False, "that is a fraction; return percent (× 100).")
    each = [100 * m.float().mean().item() for m in masks.values()]
    if abs(value - min(each)) < 1e-4:
        return Feedback(name, False, f"you took the lowest of the attacks' accuracies ({min(each):.1f}%). Different "
                                     "attacks fool different images: an image counts only if *no* attack fooled it, "
                                     "so AND the masks per image first, then average.")
    if abs(value - sum(each) / len(each)) < 1e-4:
        return Feedback(name, False, "you averaged the attacks' accuracies; combine the masks per image with AND.")
    return Feedback(name, False, f"got {value:.2f}, expected {ref:.2f}: torch.stack(list(masks.values())).all(0) "
                                 "is True where an image survived everything.")


PGD_STEPS, PGD_ALPHA = 10, 0.05


def pgd(my_pgd: Callable[[nn.Module, torch.Tensor, torch.Tensor, float, int, float], torch.Tensor]) -> Feedback:
    """Check your projected gradient descent (Madry et al. 2018) against :func:`featgap.attacks.pgd`.

    Called as ``my_pgd(model, x, y, eps, steps, step_size)`` with ``eps = 0.3``, ``steps = 10``
    and ``step_size = 0.05``, starting **at x** (no random start): ``steps`` times
    ``x′ ← clamp(x + clip(x′ + α·sign(∇ CE) − x, −ε, ε), 0, 1)``.
    """
    name = "PGD"
    model = reference_model()
    x, y = fixed_batch()
    out, fb = call_student(name, my_pgd, model, x.clone(), y.clone(), EPS, PGD_STEPS, PGD_ALPHA,
                           signature="my_pgd(model, x, y, eps, steps, step_size)")
    if fb is not None:
        return fb
    out, fb = _tensor(name, out, tuple(x.shape), "the adversarial images")
    if fb is not None:
        return fb
    ref = library_pgd(model, x, y, eps=EPS, steps=PGD_STEPS, step_size=PGD_ALPHA, random_start=False)
    close = ((out - ref).abs() <= ATOL).float().mean().item()
    in_ball = (out - x).abs().max().item() <= EPS + ATOL
    in_box = out.min() >= -ATOL and out.max() <= 1 + ATOL
    if close >= 0.995 and in_ball and in_box:
        acc_ref = (model(ref).argmax(1) == y).float().mean().item()
        return Feedback(name, True, f"{100 * close:.1f}% of pixels match featgap's PGD-{PGD_STEPS} exactly "
                                    f"(reference model's accuracy on it: {100 * acc_ref:.0f}%).")
    if not in_ball:
        return Feedback(name, False, f"a pixel is {(out - x).abs().max():.3f} from the original, more than ε = {EPS}: "
                                     "project after every step, delta = (x_adv − x).clamp(−ε, ε).")
    if not in_box:
        return Feedback(name, False, "some pixels are outside [0, 1]: clamp x + delta to [0, 1] after each step.")
    with torch.no_grad():
        loss_out = F.cross_entropy(model(out), y).item()
        loss_ref = F.cross_entropy(model(ref), y).item()
    if loss_out < F.cross_entropy(model(x), y).item():
        return Feedback(name, False, "your attack lowered the loss: the step must climb it, x′ + α·sign(∇).")
    return Feedback(name, False, f"only {100 * close:.1f}% of pixels match featgap's PGD (loss {loss_out:.3f} vs "
                                 f"{loss_ref:.3f}). Start at x itself, take exactly `steps` steps of α·sign(∇ₓ CE), "
                                 "and project and clamp after each one.")


# ---------------------------------------------------------------------------------- tutorial 5
class _Trap:
    """An object whose unpickling runs code: what a malicious checkpoint hides."""

    def __reduce__(self) -> tuple:
        return (_spring, ("the checkpoint ran code while it was loaded",))


SPRUNG: list[str] = []
"""What :class:`_Trap` recorded when a loader unpickled it (checked, then cleared)."""


def _spring(message: str) -> str:
    SPRUNG.append(message)
    return message


def safe_load(my_load: Callable[[str | Path], dict[str, torch.Tensor]]) -> Feedback:
    """Check that your checkpoint loader returns the weights and runs nothing hidden in the file.

    Called as ``my_load(path)`` on two files written with ``torch.save``: a plain ``state_dict``
    (it must come back equal) and one that also holds a pickled object whose loading runs code
    (it must be **refused**: raise an error, as ``torch.load(path, weights_only=True)`` does).
    """
    name = "loading a checkpoint safely"
    state = {"weight": torch.arange(6.0).view(2, 3), "bias": torch.zeros(2)}
    with tempfile.TemporaryDirectory() as tmp:
        good, bad = Path(tmp) / "weights.pt", Path(tmp) / "evil.pt"
        torch.save(state, good)
        with open(bad, "wb") as f:
            pickle.dump({"weight": state["weight"], "payload": _Trap()}, f, protocol=2)
        out, fb = call_student(name, my_load, str(good), signature="my_load(path)")
        if fb is not None:
            return fb
        if not isinstance(out, dict) or set(out) != set(state) or not all(torch.equal(out[k], state[k]) for k in state):
            return Feedback(name, False, "the plain checkpoint did not come back as the same state_dict "
                                         "({name: tensor}).")
        SPRUNG.clear()
        try:
            my_load(str(bad))
        except Exception:  # noqa: BLE001 - refusing the file is the right answer
            if SPRUNG:
                SPRUNG.clear()
                return Feedback(name, False, "your loader raised an error, but only after the file's code had "
                                             "already run. Refuse before unpickling anything: weights_only=True.")
            return Feedback(name, True, "plain weights load, and a file that hides code is refused before any of "
                                        "it runs.")
        ran = bool(SPRUNG)
        SPRUNG.clear()
        return Feedback(name, False, ("the malicious file's code RAN inside your loader. " if ran else
                                      "your loader accepted a file holding an arbitrary Python object. ") +
                        "torch.load unpickles by default on torch < 2.6: pass weights_only=True (or store "
                        "weights as safetensors), so a checkpoint can only hold tensors.")


@lru_cache(maxsize=1)
def _resnet_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(6)
    return torch.rand(4, 3, 32, 32, generator=g)


def _resnet() -> nn.Module:
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return torchvision.models.resnet18(num_classes=10).eval()


def features(my_features: Callable[[nn.Module, torch.Tensor, str], torch.Tensor], layer: str = "layer3") -> Feedback:
    """Check your forward-hook feature reader against :func:`featgap.probes.extract_features`.

    Called as ``my_features(model, x, layer)`` on a torchvision ResNet-18 (10 classes, seed 0),
    ``x`` ``(4, 3, 32, 32)`` and a module name such as ``"layer3"``; returns ``(4, C)``: that
    module's output averaged over height and width. Remove the hook when done.
    """
    name = f"features of {layer!r}"
    model = _resnet()
    x = _resnet_batch()
    out, fb = call_student(name, my_features, model, x.clone(), layer, signature="my_features(model, x, layer)")
    if fb is not None:
        return fb
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    if not isinstance(out, torch.Tensor):
        return Feedback(name, False, f"expected a tensor, got {type(out).__name__}")
    out = out.detach().float()
    ref = extract_features(model, x, [layer], pool="avg")[layer]
    if out.ndim == 4:
        return Feedback(name, False, f"got shape {tuple(out.shape)}: the layer's full (N, C, H, W) output. "
                                     "Average over height and width: out.mean(dim=(2, 3)).")
    if out.shape == ref.shape and _same(out, ref, atol=1e-4):
        if hooks:
            return Feedback(name, False, "the features are right, but your hook is still attached: keep the handle "
                                         "register_forward_hook returns and call handle.remove().")
        return Feedback(name, True, f"matches extract_features(model, x, [{layer!r}]): shape {tuple(out.shape)}.")
    flat = extract_features(model, x, [layer], pool="flatten")[layer]
    if out.shape == flat.shape:
        return Feedback(name, False, "you flattened the feature map; the gap uses the average over the spatial "
                                     "positions (one number per channel).")
    for other in ("layer1", "layer2", "layer3", "layer4"):
        f = extract_features(model, x, [other], pool="avg")[other]
        if other != layer and f.shape == out.shape and _same(out, f, atol=1e-4):
            return Feedback(name, False, f"that is the output of {other!r}, not {layer!r}: "
                                         "model.get_submodule(layer) finds a module by its name.")
    return Feedback(name, False, f"expected shape {tuple(ref.shape)} equal to the average-pooled output of {layer!r}; "
                                 f"got {tuple(out.shape)}. Did the model run in eval mode (model.eval())?")


__all__ = ["Feedback", "confused_target", "features", "fgsm", "fixed_batch", "fold_head", "gap", "margin",
           "misalignment", "pgd", "reference_model", "safe_load", "wilson", "worst_case"]
