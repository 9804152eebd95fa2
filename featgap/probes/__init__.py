"""Probes: pure computations on a network's features (no plotting), returning pandas DataFrames.

**One call shape.** Every probe takes a model and a batch of images the same way::

    probe(model, x, y, x_adv=None, *, layers=None, eps=None, steps=10, norm="linf", attack=None,
          seed=0, batch_size=..., ...)

``x`` are natural images ``(N, C, H, W)`` in [0, 1] (or uint8), ``y`` their labels ``(N,)``.
``x_adv`` are their adversarial examples; when it is ``None`` the probe makes them itself with
PGD-``steps`` at radius ``eps`` (or with your ``attack(model, x, y)``), seeded by ``seed`` —
so ``gap_table(model, x, y, eps=0.3)`` and ``gap_table(model, x, y, my_x_adv)`` measure the
same thing. ``layers`` names what to read: module names, torchvision graph nodes or
``"logits"``; featgap models default to their ``layer_names``.

**One return type.** A probe returns a tidy ``pandas.DataFrame``: one row per sample × layer
(× ε, × input, × method, × epoch), one column per variable, named as documented once in
:data:`COLUMNS`. :func:`summarize` turns any of them into per-group means with bootstrap
confidence intervals, again a DataFrame; :func:`to_csv` writes one the way ``featgap probe`` does.
Embeddings and attributions return a documented dataclass that holds a DataFrame (``.table``)
next to the arrays a DataFrame cannot hold (coordinates, maps).

Probes (model and images in, DataFrame out)
    :func:`gap_table`        the feature gap (L2, L∞, cosine, relative L2) per sample and layer,
                             with predictions and outcome (robust / flipped / wrong);
    :func:`gap_vs_eps`       the same over a sweep of attack radii;
    :func:`component_norms`  ‖f1‖, ‖f2‖, cos(f1, f2) and the confused head's hit rate of any
                             model with ``components(x)`` (an AFD student), per sample and input;
    :func:`local_lipschitz`  the empirical local Lipschitz constant per sample and layer;
    :func:`geometry_table`   centroid misalignment, alignment, uniformity, kNN and linear-probe
                             accuracies — set-level, one row per layer;
    :func:`compare_attributions`  Captum attribution maps of natural and adversarial inputs,
                             compared per sample (an :class:`AttributionComparison`);
    :func:`summarize`, :func:`load_trajectory`, :class:`GapTrajectory` (the gap over training).

Helpers (tensors or arrays in, tensors or floats out — for training loops and your own code)
    :func:`extract_features`, :class:`LayerReader`, :func:`pool_features` — read layers;
    :func:`adversarial_examples` — the probes' attack;
    :func:`pairwise_gap` (two feature batches), :func:`feature_gap` (a model's pooled features);
    :func:`class_centroids`, :func:`centroid_misalignment`, :func:`alignment`, :func:`uniformity`,
    :func:`knn_accuracy`, :func:`linear_probe_accuracy` — on feature arrays;
    :func:`embed`, :func:`embed_sequence` — UMAP / PCA / t-SNE maps of features (an :class:`Embedding`);
    :func:`attribute` — attribution maps; :func:`bootstrap_mean_ci` — one mean and its interval.
"""

from featgap.probes.adversarial import Attack, adversarial_examples
from featgap.probes.attribution import (ATTRIBUTION_DISTANCES, ATTRIBUTION_METHODS, AttributionComparison, attribute,
                                        compare_attributions)
from featgap.probes.components import COMPONENT_STATS, component_norms
from featgap.probes.embedding import Embedding, embed, embed_sequence
from featgap.probes.extract import LayerReader, extract_features, pool_features
from featgap.probes.feature_gap import GAP_METRICS, OUTCOMES, feature_gap, gap_table, gap_vs_eps, pairwise_gap
from featgap.probes.frames import COLUMNS, to_csv
from featgap.probes.geometry import (alignment, centroid_misalignment, class_centroids, geometry_table, knn_accuracy,
                                     linear_probe_accuracy, local_lipschitz, uniformity)
from featgap.probes.summary import bootstrap_mean_ci, summarize
from featgap.probes.trajectory import GapTrajectory, load_trajectory

__all__ = ["ATTRIBUTION_DISTANCES", "ATTRIBUTION_METHODS", "COLUMNS", "COMPONENT_STATS", "GAP_METRICS", "OUTCOMES",
           "Attack", "AttributionComparison", "Embedding", "GapTrajectory", "LayerReader",
           "adversarial_examples", "alignment", "attribute", "bootstrap_mean_ci", "centroid_misalignment",
           "class_centroids", "compare_attributions", "component_norms", "embed", "embed_sequence",
           "extract_features", "feature_gap", "gap_table", "gap_vs_eps", "geometry_table", "knn_accuracy",
           "linear_probe_accuracy", "load_trajectory", "local_lipschitz", "pairwise_gap", "pool_features",
           "summarize", "to_csv", "uniformity"]
