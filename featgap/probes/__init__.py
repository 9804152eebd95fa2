"""Probes: pure computations on a model's features (no plotting).

* :func:`feature_gap` / :func:`pairwise_gap` — per-sample L2, L∞, cosine and relative-L2
  distances between the features of natural inputs and of their adversarial examples.
"""

from featgap.probes.feature_gap import GAP_METRICS, feature_gap, pairwise_gap

__all__ = ["GAP_METRICS", "feature_gap", "pairwise_gap"]
