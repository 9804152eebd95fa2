"""featgap: see and close the feature gap between natural and adversarial inputs.

The package is layered; lower layers never import higher ones::

    data -> models -> attacks -> methods -> train (one Trainer) -> runs
         -> evaluate / probes -> cli

Start with ``featgap demo`` on the command line, or in Python::

    import featgap
    train = featgap.data.load("mnist5k", "train")
    model = featgap.models.create("smallcnn", num_classes=10, in_channels=1)
"""

from __future__ import annotations

__version__ = "0.1.0"

from featgap import data, models  # noqa: E402  (light imports; torch only)
from featgap.errors import FeatgapError  # noqa: E402

__all__ = ["FeatgapError", "__version__", "data", "models"]
