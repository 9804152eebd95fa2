"""Interactive views for notebooks: stock ipywidgets controls wired to plotly FigureWidgets.

Each view takes a run (a run directory or a loaded model) plus data, calls the probes, and draws
with :mod:`featgap.plots`; see :class:`featgap.widgets.base.View` for what every view shares.
Nothing in featgap imports this package.
"""
