"""Probes: pure computations on a network's features (no plotting), returning tidy tables.

Reading features
    :func:`extract_features`, :class:`LayerReader` — pooled outputs of named layers of any
    ``nn.Module`` (forward hooks, or torchvision FX nodes), batched, no-grad.
Feature gap
    :func:`pairwise_gap`, :func:`feature_gap` — per-sample L2, L∞, cosine, relative L2;
    :func:`gap_table` — per (sample, layer), with predictions and outcome;
    :func:`gap_vs_eps` — the same over a sweep of attack radii;
    :func:`summarize` — means with bootstrap confidence intervals per layer/class/outcome;
    :class:`GapTrajectory`, :func:`load_trajectory` — the gap over training.
AFD components
    :func:`component_norms` — ‖f1‖, ‖f2‖, cos(f1, f2) and the confused head's hit rate per sample.
Alignment and geometry
    :func:`centroid_misalignment`, :func:`class_centroids`, :func:`alignment`, :func:`uniformity`,
    :func:`knn_accuracy`, :func:`linear_probe_accuracy`, :func:`local_lipschitz`; :func:`geometry_table` — all of them per layer.
Embeddings
    :func:`embed` — UMAP, PCA or t-SNE of natural + adversarial features in one space, pairs kept;
    :func:`embed_sequence` — comparable maps across checkpoints (AlignedUMAP or one PCA frame);
    cached on disk by content hash; umap-learn is imported only when needed.
Attributions
    :func:`compare_attributions`, :func:`attribute` — Captum integrated gradients, saliency and
    input×gradient maps of natural and adversarial inputs side by side, with map distances.
Tables
    :class:`Table` — named NumPy columns; ``to_csv``, ``to_pandas``, ``where``.
"""

from featgap.probes.attribution import (ATTRIBUTION_METHODS, AttributionComparison, attribute,
                                        compare_attributions)
from featgap.probes.components import COMPONENT_STATS, component_norms
from featgap.probes.embedding import Embedding, embed, embed_sequence
from featgap.probes.extract import LayerReader, extract_features, pool_features
from featgap.probes.feature_gap import (GAP_METRICS, OUTCOMES, adversarial_examples, feature_gap, gap_table,
                                        gap_vs_eps, pairwise_gap)
from featgap.probes.geometry import (alignment, centroid_misalignment, class_centroids, geometry_table, knn_accuracy,
                                     linear_probe_accuracy, local_lipschitz, uniformity)
from featgap.probes.summary import bootstrap_mean_ci, summarize
from featgap.probes.table import Table
from featgap.probes.trajectory import GapTrajectory, load_trajectory

__all__ = ["COMPONENT_STATS", "component_norms", "ATTRIBUTION_METHODS", "AttributionComparison", "attribute", "compare_attributions", "GAP_METRICS", "OUTCOMES", "GapTrajectory", "LayerReader", "Table", "adversarial_examples", "alignment", "centroid_misalignment", "class_centroids", "Embedding", "embed", "embed_sequence", "geometry_table", "knn_accuracy",
           "linear_probe_accuracy", "local_lipschitz", "uniformity",
           "bootstrap_mean_ci", "extract_features", "feature_gap", "gap_table", "gap_vs_eps", "load_trajectory",
           "pairwise_gap", "pool_features", "summarize"]
