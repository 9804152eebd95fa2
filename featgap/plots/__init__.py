"""Figures: pure functions from a probe's DataFrame (or a run directory) to a ``plotly.graph_objects.Figure``.

No widget code and no computation beyond arranging what the probes computed: the widgets, the
HTML report and the CLI draw with the same functions. Nothing below this package imports plotly.
"""
