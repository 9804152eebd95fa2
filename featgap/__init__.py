"""featgap: see and close the feature gap between natural and adversarial inputs.

The package is layered. A module may import its own package and any *lower* tier, never a
higher one or a sibling on its own tier (``tests/test_layers.py`` checks every import, including
those inside functions)::

    tier 0  errors · progress · cache        one-line errors, progress bars, the disk cache
    tier 1  data  |  threads  |  jobs        datasets as uint8 tensors, batch loading | CPU thread count | worker processes
    tier 2  models                           features(x) -> z, head(z) -> logits
    tier 3  attacks                          PGD / FGSM with pluggable objectives
    tier 4  runs                             run directories: config.json, metrics, safetensors
    tier 5  probes  |  methods               measurements on any nn.Module | one loss per method
    tier 6  train · evaluate · presets       the one Trainer | clean / PGD / AutoAttack | recipes
    tier 7  plots                            DataFrame / run -> plotly Figure, pure functions
    tier 8  widgets  |  report               ipywidgets controls wired to probes and plots |
                                             one standalone HTML page per experiment
    tier 9  demo  |  exercises               the main job | the tutorials' exercise checks and shared runs
    tier 10 cli                              the ``featgap`` command

Run directories sit below methods and probes: they are a storage format (plain models in
safetensors, metadata in JSON) that training writes and everything else reads, so any layer
above can load a run without knowing how it was trained. Probes and methods never see each
other: a method's model exposes what a probe needs (e.g. AFD's ``components()``).

``import featgap`` imports no sub-package (and so not torch): ``featgap.data``,
``featgap.runs``, ... are loaded on first use, which keeps ``featgap --help`` fast.

Start with ``featgap demo`` on the command line, or in Python::

    import featgap
    train = featgap.data.load("mnist5k", "train")
    model = featgap.models.create("smallcnn", num_classes=10, in_channels=1)
"""

from __future__ import annotations

import importlib
from typing import Any

from featgap.errors import FeatgapError

__version__ = "0.1.0"

_SUBMODULES = ("attacks", "cache", "data", "evaluate", "jobs", "methods", "models", "presets", "probes", "progress", "runs",
               "threads", "train")

__all__ = ["FeatgapError", "__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    """Import a sub-package on first access (PEP 562): ``featgap.runs.load(...)`` just works."""
    if name in _SUBMODULES:
        return importlib.import_module(f"featgap.{name}")
    raise AttributeError(f"module 'featgap' has no attribute {name!r}")
