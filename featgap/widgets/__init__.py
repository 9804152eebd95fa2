"""Interactive views for notebooks: stock ipywidgets controls wired to plotly FigureWidgets.

Each view takes a run (a run directory or a loaded model) plus data, calls the probes, and draws
with :mod:`featgap.plots`; see :class:`featgap.widgets.base.View` for what every view shares.
Nothing in featgap imports this package.
"""

from featgap.widgets.run_comparer import RunComparer  # noqa: F401
from featgap.widgets.embedding_explorer import EmbeddingExplorer  # noqa: F401
from featgap.widgets.training_scrubber import TrainingScrubber  # noqa: F401
from featgap.widgets.gap_explorer import GapExplorer  # noqa: F401
from featgap.widgets.sample_inspector import SampleInspector  # noqa: F401
