"""Learning-rate schedules as a multiplier of the base lr, evaluated at fractional epochs.

* ``piecewise``: multiply by each ``factor`` once ``epoch`` passes its milestone
  (Madry/TRADES: ×0.1 at 50 % and 75 %; AFD: ×0.8 at 10, then ×0.5 at 12, 14, 16, 18).
* ``cosine``: half a cosine from 1 to 0 over the run.
* ``constant``: 1.
A linear warm-up over the first ``warmup_epochs`` multiplies any of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def lr_factor(epoch: float, total_epochs: int, schedule: str,
              steps: Sequence[tuple[float, float]] = (), warmup_epochs: float = 0.0) -> float:
    """The lr multiplier at (fractional, 0-based) ``epoch``."""
    if schedule == "piecewise":
        factor = 1.0
        for milestone, mult in steps:
            if epoch >= milestone:
                factor *= mult
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch / total_epochs, 1.0)))
    elif schedule == "constant":
        factor = 1.0
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup_epochs > 0 and epoch < warmup_epochs:
        factor *= epoch / warmup_epochs
    return factor


def ramp(epoch: float, ramp_epochs: float) -> float:
    """Linear ramp from 0 to 1 over ``ramp_epochs`` (1 when ``ramp_epochs`` is 0)."""
    return 1.0 if ramp_epochs <= 0 else min(1.0, epoch / ramp_epochs)
