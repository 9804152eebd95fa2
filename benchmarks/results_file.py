"""``docs/results.md`` holds one section per experiment; each script rewrites only its own.

A section is the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``. Writing a
section replaces that span (or appends it), atomically, and leaves the other experiments'
sections as they were — so ``afd_vs_vaft.py`` and ``afa_experiment.py`` can run in any order.
"""

from __future__ import annotations

import re
import statistics
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
