"""Tests of AFA's building blocks (featgap.methods.contrastive): the supervised contrastive loss
against an independent NumPy loop and a hand computation, its edge cases (skipped anchors, no
positives, bf16), the views loss, the projection head, and PGD on the contrastive objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featgap.attacks import pgd
from featgap.methods.contrastive import (ProjectionHead, afa_views_loss, contrastive_objective, counted_anchors,
                                         projector, supcon_loss)
from featgap.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


def supcon_numpy(z: np.ndarray, labels: np.ndarray, tau: float, anchors: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Reference, float64, explicit loops: (per-row losses with 0 where not counted, counted mask)."""
    z = z.astype(np.float64)
    m = len(labels)
    anchors = np.ones(m, dtype=bool) if anchors is None else anchors
    per_row, counted = np.zeros(m), np.zeros(m, dtype=bool)
    for a in range(m):
        if not anchors[a]:
            continue
        positives = [p for p in range(m) if p != a and labels[p] == labels[a]]
        if not positives:
            continue
        denom = sum(math.exp(float(z[a] @ z[k]) / tau) for k in range(m) if k != a)
        terms = [math.log(math.exp(float(z[a] @ z[p]) / tau) / denom) for p in positives]
        per_row[a] = -sum(terms) / len(positives)
        counted[a] = True
    return per_row, counted


def unit_rows(m: int, k: int = 6) -> torch.Tensor:
    return F.normalize(torch.randn(m, k), dim=1)


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("masked", [False, True])
def test_supcon_matches_a_numpy_loop(tau, masked):
    z = unit_rows(14)
    labels = torch.randint(0, 3, (14,))
    anchors = torch.rand(14) < 0.5 if masked else None
    want_rows, want_counted = supcon_numpy(z.numpy(), labels.numpy(), tau, None if anchors is None else anchors.numpy())
    assert want_counted.any()
    got_rows = supcon_loss(z, labels, temperature=tau, anchors=anchors, reduction="none")
    assert got_rows.dtype == torch.float32 and got_rows.shape == (14,)
    np.testing.assert_allclose(got_rows.double().numpy(), want_rows, rtol=1e-5, atol=1e-6)
    assert counted_anchors(labels, anchors).tolist() == want_counted.tolist()
    mean = supcon_loss(z, labels, temperature=tau, anchors=anchors)
    assert mean.item() == pytest.approx(want_rows[want_counted].mean(), rel=1e-5)
    total = supcon_loss(z, labels, temperature=tau, anchors=anchors, reduction="sum")
    assert total.item() == pytest.approx(want_rows.sum(), rel=1e-5)


def test_a_class_with_one_sample_is_skipped_without_nan():
    z = unit_rows(6).requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 2, 2, 2])  # class 1 has a single sample: no positive
    rows = supcon_loss(z, labels, reduction="none")
    assert rows[2].item() == 0.0 and (rows[[0, 1, 3, 4, 5]] > 0).all()
    want_rows, want_counted = supcon_numpy(z.detach().numpy(), labels.numpy(), 0.1)
    assert want_counted.tolist() == [True, True, False, True, True, True]
    loss = supcon_loss(z, labels)
    assert loss.item() == pytest.approx(want_rows[want_counted].mean(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[2].abs().sum() > 0  # the lone sample still acts as a negative


def test_no_positive_anywhere_gives_a_differentiable_zero():
    z = unit_rows(5).requires_grad_(True)
    for labels, anchors in [(torch.arange(5), None),                       # all labels distinct
                            (torch.tensor([0, 0, 1, 1, 2]), torch.tensor([False] * 4 + [True]))]:
        loss = supcon_loss(z, labels, anchors=anchors)
        assert loss.item() == 0.0 and loss.requires_grad
        (g,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(g).all() and (g == 0).all()
        rows = supcon_loss(z, labels, anchors=anchors, reduction="none")
        assert rows.shape == (5,) and (rows == 0).all()
    one = unit_rows(1).requires_grad_(True)  # a single view: nothing to contrast
    assert supcon_loss(one, torch.tensor([3])).item() == 0.0


def test_hand_computed_value():
    # two identical unit vectors of class 0 and one orthogonal vector of class 1, τ = 1:
    # anchor 0: positive 1 with z0·z1 = 1, negative 2 with z0·z2 = 0
    #   loss_0 = −log(e¹ / (e¹ + e⁰)) = log(1 + e⁻¹); anchor 1 the same; anchor 2 has no positive
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    want = math.log(1.0 + math.exp(-1.0))  # ≈ 0.3133
    assert supcon_loss(z, labels, temperature=1.0).item() == pytest.approx(want, rel=1e-6)
    rows = supcon_loss(z, labels, temperature=1.0, reduction="none")
    torch.testing.assert_close(rows, torch.tensor([want, want, 0.0]))
    # τ = 0.5 doubles the logits: log(1 + e⁻²)
    assert supcon_loss(z, labels, temperature=0.5).item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)


def test_invariant_to_row_permutation():
    z, labels = unit_rows(12), torch.randint(0, 4, (12,))
    anchors = torch.rand(12) < 0.6
    perm = torch.randperm(12)
    rows = supcon_loss(z, labels, anchors=anchors, reduction="none")
    rows_p = supcon_loss(z[perm], labels[perm], anchors=anchors[perm], reduction="none")
    torch.testing.assert_close(rows_p, rows[perm])
    assert supcon_loss(z[perm], labels[perm], anchors=anchors[perm]).item() == pytest.approx(
        supcon_loss(z, labels, anchors=anchors).item(), rel=1e-6)


def test_bf16_input_is_computed_in_float32():
    z, labels = unit_rows(16, 8), torch.randint(0, 3, (16,))
    zb = z.bfloat16().requires_grad_(True)
    loss_b = supcon_loss(zb, labels)
    assert loss_b.dtype == torch.float32
    # exactly the float32 computation on the bf16-rounded values, and close to the unrounded one
    assert loss_b.item() == pytest.approx(supcon_loss(zb.detach().float(), labels).item(), rel=1e-6)
    assert loss_b.item() == pytest.approx(supcon_loss(z, labels).item(), rel=2e-2)
    loss_b.backward()
    assert zb.grad.dtype == torch.bfloat16 and torch.isfinite(zb.grad.float()).all()


def test_views_loss_stacks_clean_and_adversarial_views():
    b = 8
    z_nat, z_adv, y = unit_rows(b), unit_rows(b), torch.randint(0, 3, (b,))
    z, labels = torch.cat([z_nat, z_adv]), torch.cat([y, y])
    adv_half = torch.arange(2 * b) >= b
    assert afa_views_loss(z_nat, z_adv, y, anchors="adversarial").item() == pytest.approx(
        supcon_loss(z, labels, anchors=adv_half).item(), rel=1e-6)
    assert afa_views_loss(z_nat, z_adv, y).item() == pytest.approx(supcon_loss(z, labels).item(), rel=1e-6)
    rows = afa_views_loss(z_nat, z_adv, y, temperature=0.5, anchors="adversarial", reduction="none")
    assert (rows[:b] == 0).all() and (rows[b:] > 0).all()  # each adversarial anchor has its clean view
    with pytest.raises(ValueError, match="anchors"):
        afa_views_loss(z_nat, z_adv, y, anchors="clean")
    with pytest.raises(ValueError, match="reduction"):
        supcon_loss(z, labels, reduction="max")
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(z, labels, temperature=0.0)


def test_projection_head_gives_unit_vectors():
    head = ProjectionHead(32)
    assert [type(m).__name__ for m in head.net] == ["Linear", "ReLU", "Linear"]
    assert head.net[0].weight.shape == (32, 32) and head.net[2].weight.shape == (128, 32)
    z = head(torch.randn(5, 32))
    assert z.shape == (5, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    assert ProjectionHead(32, out_dim=16)(torch.randn(3, 32)).shape == (3, 16)


def test_objective_is_the_adversarial_anchor_loss_with_fixed_clean_views():
    model, head = create("smallcnn", 10, 1).eval(), ProjectionHead(128)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 3
    z_nat = head(model.features(x)).detach().requires_grad_(True)  # a leaf, to see that nothing reaches it
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    objective = contrastive_objective(projector(head), z_nat, y, temperature=0.2)
    values = objective(model, x_adv, y)
    assert values.shape == (8,) and (values > 0).all()
    with torch.no_grad():
        z_adv = head(model.features(x_adv))
    want = afa_views_loss(z_nat.detach(), z_adv, y, temperature=0.2, anchors="adversarial", reduction="none")[8:]
    torch.testing.assert_close(values.detach(), want)
    values.sum().backward()
    assert z_nat.grad is None


def test_pgd_on_the_contrastive_objective_raises_it_and_leaves_no_parameter_grads():
    model, head = create("smallcnn", 10, 1).eval(), ProjectionHead(128)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 4
    with torch.no_grad():
        z_nat = head(model.features(x))
    objective = contrastive_objective(projector(head), z_nat, y)
    with torch.no_grad():
        clean = objective(model, x, y).mean().item()
    # At initialisation all projections nearly coincide (mean cosine ≈ 0.997), so the landscape is
    # flat and curved: the default α = 2.5ε/steps = 0.15 overshoots; α = ε/10 climbs on every seed tried.
    x_adv = pgd(model, x, y, eps=0.3, steps=5, step_size=0.03, objective=objective)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        adv = objective(model, x_adv, y).mean().item()
    assert adv > clean + 1e-3
    assert all(p.grad is None for p in list(model.parameters()) + list(head.parameters()))
