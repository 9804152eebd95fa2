"""``docs/results.md`` holds one section per experiment; each script rewrites only its own.

A section is the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``. Writing a
section replaces that span (or appends it), atomically, and leaves the other experiments'
sections as they were — so ``afd_vs_vaft.py`` and ``afa_experiment.py`` can run in any order.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from featgap import runs

TITLE = ("# Experiment results\n\nEach section below is written by the script it names; do not edit by hand. "
         "All runs: 2 CPU cores, no GPU.\n")


def write_section(path: str | Path, name: str, text: str) -> None:
    """Put ``text`` in section ``name`` of ``path`` (created with a title if missing)."""
    path = Path(path)
    old = path.read_text() if path.exists() else TITLE
    if not old.startswith(TITLE.split("\n")[0]):
        old = TITLE  # a results file from before sections: start over
    block = f"<!-- {name}:begin -->\n{text.strip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->.*?<!-- {re.escape(name)}:end -->", re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.write_text(path, new)


def mean_std(values: list[float], digits: int = 1) -> str:
    """``"m ± s"`` over seeds (sample std), or the single value."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def train_seconds(run: str | Path) -> float:
    """Wall time a run spent training, summed over its epochs (``metrics.jsonl``; resumes included)."""
    return sum(r.get("seconds", 0.0) for r in runs.read_metrics(run))


Z95 = 1.959963984540054
"""The two-sided 95 % quantile of the standard normal."""
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
"""Two-sided 95 % quantiles of Student's t by degrees of freedom (seeds − 1)."""


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` (in [0, 1]) observed on ``n`` trials::

        centre = (p + z²/2n) / (1 + z²/n),   half = z·sqrt(p(1 − p)/n + z²/4n²) / (1 + z²/n)

    Returns ``(low, high)`` in [0, 1]. Unlike p ± z·sqrt(p(1 − p)/n) it never leaves [0, 1] and
    keeps a non-zero width at p = 0 or 1 (e.g. 0 of 1,000 → [0, 0.38 %]).
    """
    if n <= 0:
        raise ValueError("n must be positive")
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Interval:
    """An accuracy over seeds with its 95 % interval, in percent.

    ``mean`` is the mean over seeds, ``std`` their sample standard deviation. ``low``/``high``
    is the Wilson interval of ``mean`` on the ``n`` test images, widened on each side by the
    half-width of the 95 % t-interval of the seed mean (``t·std/√seeds``). The two sources of
    doubt are the test sample (the same ``n`` images for every seed, so it does not shrink with
    more seeds) and the training run; adding their half-widths, rather than their squares, errs
    on the wide side.
    """

    mean: float
    std: float
    low: float
    high: float
    seeds: int
    n: int
    """Test images behind each value; 0 for a measure that is not an accuracy (:func:`seed_interval`)."""
    digits: int = 1

    def __str__(self) -> str:
        d = self.digits
        spread = f" ± {self.std:.{d}f}" if self.seeds > 1 else ""
        return f"{self.mean:.{d}f}{spread} [{self.low:.{d}f}, {self.high:.{d}f}]"

    def above(self, other: "Interval") -> bool:
        """True when this interval lies entirely above ``other`` (they separate)."""
        return self.low > other.high


def interval(values: list[float], n: int) -> Interval:
    """:class:`Interval` of accuracies ``values`` (percent, one per seed) measured on ``n`` images."""
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    seed_half = T95.get(len(values) - 1, Z95) * s / math.sqrt(len(values)) if len(values) > 1 else 0.0
    lo, hi = wilson(m / 100.0, n)
    return Interval(m, s, max(0.0, 100 * lo - seed_half), min(100.0, 100 * hi + seed_half), len(values), n)



def seed_interval(values: list[float], digits: int = 3) -> Interval:
    """The 95 % t-interval of a seed mean, for a measure that is not an accuracy (a feature gap,
    a Lipschitz constant): only the spread over seeds, no test-sample part."""
    m = statistics.mean(values)
    if len(values) < 2:
        return Interval(m, 0.0, m, m, len(values), 0, digits)
    s = statistics.stdev(values)
    half = T95.get(len(values) - 1, Z95) * s / math.sqrt(len(values))
    low = max(0.0, m - half) if min(values) >= 0 else m - half  # a distance or a rate is never negative
    return Interval(m, s, low, m + half, len(values), 0, digits)


def compare(claim: str, a: Interval, b: Interval, *, lower: bool = False) -> str:
    """A verdict line: ``claim`` ("a is higher than b", or with ``lower=True`` "a is below b")
    holds only when the two 95 % intervals separate in that direction.

    ``"yes"`` when they separate the claimed way, ``"no, the opposite holds"`` when they separate
    the other way, else ``"not distinguishable at n = …, … seeds"``.
    """
    hi, lo = (b, a) if lower else (a, b)
    if not a.n and min(a.seeds, b.seeds) < 2:  # a seed interval needs two seeds
        return (f"- {claim}: **not assessable** with one seed: no interval (point values "
                f"{a.mean:.{a.digits}f} vs {b.mean:.{b.digits}f})")
    if hi.above(lo):
        word = "**yes**"
    elif lo.above(hi):
        word = "**no**, the opposite holds"
    elif a.n:
        word = f"**not distinguishable** at n = {a.n:,} test images, {a.seeds} seed{'s' if a.seeds > 1 else ''}"
    else:
        word = f"**not distinguishable** over {a.seeds} seeds"
    return f"- {claim}: {word} ({a} vs {b})"
