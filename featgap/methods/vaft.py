"""Vanilla adversarial fine-tuning (vAFT): PGD-AT that starts from a naturally trained model.

The baseline of the AFD paper (arXiv 2401.14707): the same loss as PGD-AT, but initialised
from a standard checkpoint (``--init``) and trained for a short fine-tuning schedule. AFD
observes that this fine-tuning widens the *feature gap* between natural and adversarial
features; compare the ``feature_gap_*`` columns of a vAFT run's ``metrics.jsonl``.
"""

from __future__ import annotations

from featgap.methods.pgd_at import PGDAT


class VAFT(PGDAT):
    r"""vAFT: vanilla adversarial fine-tuning, PGD-AT started from a natural model (``--init``).

    Paper: the baseline of Zhou et al., "AFD: Mitigating Feature Gap for Adversarial Robustness
    by Feature Disentanglement", AAAI 2025, https://arxiv.org/abs/2401.14707

    Loss: CE(f(x'), y),  x' = PGD on CE in the ε-ball (as PGD-AT).

    Options: none.
    """

    name = "vaft"
    needs_init = True
