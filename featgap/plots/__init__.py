"""Figures: pure functions from a probe's DataFrame (or a run directory) to a ``plotly.graph_objects.Figure``.

No widget code and no computation beyond arranging what the probes computed: the widgets, the
HTML report and the CLI draw with the same functions. Nothing below this package imports plotly.
"""

from featgap.plots.results import (alignment_bars, gap_vs_robust, load_results, results_table,  # noqa: F401
                                   run_comparison)
from featgap.plots.embedding import embedding_map, embedding_maps, embedding_points  # noqa: F401
from featgap.plots.training import accuracy_table, gap_over_training, set_epoch_marker, training_curves  # noqa: F401
from featgap.plots.gap import (OUTCOME_COLORS, gap_by_layer, gap_by_layer_runs, gap_distribution,  # noqa: F401
                              gap_overview, gap_vs_eps, gap_vs_eps_runs)
from featgap.plots.sample import (attribution_maps, component_norms, sample_gap, sample_images,  # noqa: F401
                                 sample_overview, topk_bars)
