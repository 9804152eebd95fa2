"""Building blocks of AFA, adversarial feature alignment (arXiv 2402.12187; docs: ``docs/methods/afa.md``).

AFA pre-trains the encoder with a *supervised contrastive* loss inside a min–max game. This
module holds the pieces, each pure and tested on its own; the method that trains with them
lives elsewhere.

**Projection.** The pooled feature ``h = f(x)`` goes through a 2-layer MLP head
``g: Linear(d, d) → ReLU → Linear(d, 128)`` and is L2-normalised, ``z = g(h) / ‖g(h)‖``
(:class:`ProjectionHead`). On the unit sphere ``z_a · z_b`` is a cosine similarity in [−1, 1].

**Supervised contrastive loss** (Khosla et al. 2020, arXiv 2004.11362, the "L_out" form).
For a set of M projected views with labels, each *anchor* ``a`` is scored against all other
views::

    loss_a = −1/|P(a)| · Σ_{p ∈ P(a)} log( exp(z_a·z_p / τ) / Σ_{k ≠ a} exp(z_a·z_k / τ) )

* **positives** ``P(a)``: every *other* view with the same label as ``a`` — in AFA the other
  samples of the class and, for an adversarial anchor, its own clean view and the clean and
  adversarial views of its classmates;
* **negatives**: the views of other classes; they appear only in the denominator, together
  with the positives (the sum over ``k ≠ a`` runs over everything but the anchor itself).

Each log term is the log-probability that a softmax over the anchor's similarities picks
positive ``p``: minimising the loss pulls an anchor toward its class and away from the other
classes (alignment of same-class features, separation of different-class ones). An anchor
without any positive has nothing to be pulled toward and is skipped (:func:`supcon_loss`).

**Temperature τ** (default 0.1) scales the similarities before the softmax. Small τ sharpens
the softmax: the hardest negatives (the most similar other-class views) dominate the gradient
and classes are packed tightly; large τ spreads the weight over all negatives and gives a
smoother, weaker signal. With unit vectors the logits lie in [−1/τ, 1/τ], so τ = 0.1 already
means logits up to ±10 — the loss is computed in float32 with the row maximum subtracted before
``exp`` (log-sum-exp), whatever the input's dtype.

**The min–max game.** The inner maximisation (:func:`contrastive_objective`, a PGD objective)
perturbs each input within the ε-ball to *maximise* the contrastive loss of its adversarial
view as an anchor. A larger loss means the adversarial feature has moved away from its
positives (its own clean view, its classmates) and toward the negatives (other classes): the
attack looks for the worst *feature misalignment*, not for a wrong logit. The outer
minimisation (:func:`afa_views_loss` over the 2B views ``[z_nat; z_adv]``) then trains encoder
and head to pull those adversarial features back to their class.

Choices, documented once:

* ``z`` is taken as given (already normalised); :func:`supcon_loss` does not normalise again.
* No ``τ / τ_base`` factor in front of the loss (the SupCon reference code has one, equal to 1
  at its defaults); featgap's formulation (``docs/methods/afa.md``) has none.
* ``reduction="none"`` returns a per-row tensor ``(M,)`` with **0 for rows not counted**
  (non-anchors and anchors with no positive); :func:`counted_anchors` gives the matching
  boolean mask, so ``loss.sum() / mask.sum()`` is the mean. ``"sum"`` is also accepted.
* The loss is always returned in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from featgap.attacks.objectives import Objective

REDUCTIONS = ("mean", "sum", "none")
ANCHORS = ("all", "adversarial")

#: ``project(model, x) -> z``: images to normalised projections, through the model the attack passes.
Project = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class ProjectionHead(nn.Module):
    """``g``: ``Linear(d, d) → ReLU → Linear(d, out_dim)``, output L2-normalised (unit rows)."""

    def __init__(self, feature_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.feature_dim, self.out_dim = int(feature_dim), int(out_dim)
        self.net = nn.Sequential(nn.Linear(self.feature_dim, self.feature_dim), nn.ReLU(inplace=True),
                                 nn.Linear(self.feature_dim, self.out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(h), dim=1, eps=1e-12)


def _check_inputs(z: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor | None) -> torch.Tensor:
    if z.ndim != 2:
        raise ValueError(f"z must be (M, k), got shape {tuple(z.shape)}")
    if labels.shape != (z.shape[0],):
        raise ValueError(f"labels must be ({z.shape[0]},), got shape {tuple(labels.shape)}")
    if anchors is None:
        return torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
    if anchors.shape != (z.shape[0],) or anchors.dtype != torch.bool:
        raise ValueError(f"anchors must be a bool mask of shape ({z.shape[0]},)")
    return anchors.to(z.device)


def _positives(labels: torch.Tensor) -> torch.Tensor:
    """``pos[a, p]``: ``p ≠ a`` and same label."""
    same = labels.view(-1, 1) == labels.view(1, -1)
    return same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)


def counted_anchors(labels: torch.Tensor, anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Bool mask ``(M,)`` of the rows :func:`supcon_loss` averages over: anchors with ≥ 1 positive."""
    mask = torch.ones_like(labels, dtype=torch.bool) if anchors is None else anchors.to(labels.device)
    return mask & _positives(labels).any(dim=1)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, *, temperature: float = 0.1,
                anchors: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Supervised contrastive loss (SupCon ``L_out``) of the rows of ``z``; see the module docstring.

    Args:
        z: ``(M, k)`` projected views, already L2-normalised (any float dtype; computed in float32).
        labels: ``(M,)`` integer labels; positives of a row are the *other* rows with its label.
        temperature: τ > 0, divides the similarities.
        anchors: optional bool mask ``(M,)`` of the rows used as anchors (default: all). Rows
            that are not anchors still serve as positives and negatives of the anchors.
        reduction: ``"mean"`` over counted anchors, ``"sum"``, or ``"none"``.

    Returns:
        float32 scalar, or ``(M,)`` per-row losses for ``"none"`` with 0 on rows not counted
        (:func:`counted_anchors` gives the mask). Anchors with no positive are skipped; when no
        anchor is counted the result is an exact 0 that is still connected to ``z`` (zero
        gradient, never NaN).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {REDUCTIONS}")
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    anchors = _check_inputs(z, labels, anchors)
    labels = labels.to(z.device)
    zf = z.float()
    pos = _positives(labels)
    counted = anchors & pos.any(dim=1)
    if not bool(counted.any()):  # covers M < 2: nothing to contrast
        zero = zf.sum() * 0.0
        return zero.expand(z.shape[0]).clone() if reduction == "none" else zero
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    logits = (zf @ zf.T) / temperature
    logits = logits.masked_fill(eye, float("-inf"))                   # k ≠ a
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()  # stability; cancels below
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    # masked_fill, not a product: the diagonal holds -inf and -inf · 0 would be NaN
    pos_sum = log_prob.masked_fill(~pos, 0.0).sum(dim=1)
    n_pos = pos.sum(dim=1).clamp_min(1)
    per_row = torch.where(counted, -pos_sum / n_pos, torch.zeros_like(pos_sum))
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / counted.sum()


def afa_views_loss(z_nat: torch.Tensor, z_adv: torch.Tensor, y: torch.Tensor, *, temperature: float = 0.1,
                   anchors: str = "all", reduction: str = "mean") -> torch.Tensor:
    """AFA's outer loss: :func:`supcon_loss` over the 2B views ``[z_nat; z_adv]`` with labels ``[y; y]``.

    ``anchors="all"`` (the default) uses every view as an anchor; ``"adversarial"`` only
    the second half (clean views still act as positives and negatives). For ``"none"`` the
    per-row losses come in the stacked order, clean rows first.
    """
    if anchors not in ANCHORS:
        raise ValueError(f"unknown anchors {anchors!r}; choose one of {ANCHORS}")
    if z_nat.shape != z_adv.shape or y.shape != (z_nat.shape[0],):
        raise ValueError("z_nat and z_adv must have the same shape (B, k) and y shape (B,)")
    z = torch.cat([z_nat, z_adv])
    labels = torch.cat([y, y])
    mask = None
    if anchors == "adversarial":
        mask = torch.arange(z.shape[0], device=z.device) >= z_nat.shape[0]
    return supcon_loss(z, labels, temperature=temperature, anchors=mask, reduction=reduction)


def projector(head: nn.Module) -> Project:
    """The usual ``project``: ``(model, x) ↦ head(model.features(x))``."""

    def project(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return head(model.features(x))

    return project


def contrastive_objective(project: Project, z_nat: torch.Tensor, y_nat: torch.Tensor, *,
                          temperature: float = 0.1) -> Objective:
    """AFA's default inner maximisation, as a PGD objective: the SupCon loss of each adversarial anchor.

    The returned ``objective(model, x_adv, y)`` computes ``z_adv = project(model, x_adv)`` and,
    for every adversarial row ``i``, the supervised contrastive loss of anchor ``z_adv[i]``
    against the set ``[z_nat; z_adv]`` with labels ``[y_nat; y]`` — the values
    ``afa_views_loss(z_nat, z_adv, y, anchors="adversarial", reduction="none")[B:]`` when the
    clean views are the same batch. Its positives include the clean view of the same sample,
    so every anchor has at least one.

    Why ``project(model, x)`` and not a closure over the encoder: :func:`featgap.attacks.pgd`
    switches the ``model`` *it is given* to eval mode (batch-norm statistics frozen) and takes
    gradients with respect to the input only. Running the encoder through that argument makes
    the attack see exactly the model PGD prepared; a closure that captured another module
    would silently run it in training mode. The projection head (no batch norm, no dropout)
    can be captured: :func:`projector` builds the usual ``project`` from it. A wrapper module
    whose forward returns ``z`` works too: ``project = lambda m, x: m(x)``.

    Choices:

    * ``z_nat`` is detached once here (the clean views are fixed targets during the attack).
    * The adversarial views interact: ``x_adv[j]`` is a positive or a negative of every other
      adversarial anchor, and PGD's gradient of the summed objective includes those terms —
      the attack maximises the total adversarial-anchor loss of the batch, as the outer loss
      would measure it. Per-sample values are still returned (PGD's restarts use them).
    * ``y`` (from PGD) labels the adversarial views; ``y_nat`` labels ``z_nat``.

    Args:
        project: ``(model, x) -> z``, images to L2-normalised projections.
        z_nat: ``(N, k)`` projected clean views (usually the same batch, N = B).
        y_nat: ``(N,)`` their labels.
        temperature: τ of the loss.
    """
    if z_nat.ndim != 2 or y_nat.shape != (z_nat.shape[0],):
        raise ValueError("z_nat must be (N, k) and y_nat (N,)")
    z_fixed, y_fixed = z_nat.detach(), y_nat.detach()

    def supcon_adversarial(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z_adv = project(model, x_adv)
        z = torch.cat([z_fixed.float(), z_adv.float()])
        labels = torch.cat([y_fixed.to(y.device), y])
        n = z_fixed.shape[0]
        mask = torch.arange(z.shape[0], device=z.device) >= n
        return supcon_loss(z, labels, temperature=temperature, anchors=mask, reduction="none")[n:]

    return supcon_adversarial


__all__ = ["ANCHORS", "REDUCTIONS", "Project", "ProjectionHead", "afa_views_loss", "contrastive_objective",
           "counted_anchors", "projector", "supcon_loss"]
