"""Every tutorial notebook runs top to bottom (in a temporary working directory), and says what it
should: tutorial 1 prints each run's feature gap from a probe DataFrame (adversarial training must
shrink it, with non-overlapping 95 % intervals, and raise robust accuracy) and displays each of the
five widget views."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

GAP_LINE = re.compile(r"^(?P<run>\S+)\s+pool: mean gap L2\s+(?P<mean>[\d.]+) \[95% CI (?P<lo>[\d.]+), (?P<hi>[\d.]+)\]"
                      r"\s+robust accuracy\s+(?P<acc>[\d.]+)%\s+\(n = (?P<n>\d+),", re.MULTILINE)


def gap_lines(text: str) -> dict[str, dict[str, float]]:
    """The tutorial's printed summary lines, ``run → {mean, lo, hi, acc, n}``."""
    return {m["run"]: {k: float(m[k]) for k in ("mean", "lo", "hi", "acc", "n")} for m in GAP_LINE.finditer(text)}


def check_first_look(nb) -> None:
    """Tutorial 1: the probe's numbers tell the lesson, and every view is displayed as a widget."""
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    gaps = gap_lines(text)
    assert set(gaps) == {"standard", "pgd_at"}, f"expected a gap line per run, got:\n{text}"
    for run, g in gaps.items():
        assert g["lo"] <= g["mean"] <= g["hi"] and g["n"] == 500, (run, g)
    std, adv = gaps["standard"], gaps["pgd_at"]
    assert adv["hi"] < std["lo"], f"PGD-AT should shrink the gap: {adv} vs {std}"
    assert adv["acc"] >= std["acc"] + 30, f"PGD-AT should be far more robust: {adv['acc']}% vs {std['acc']}%"
    for view in ("GapExplorer", "SampleInspector", "TrainingScrubber", "EmbeddingExplorer", "RunComparer"):
        cells = [c for c in nb.cells if c.cell_type == "code" and f"{view}(" in c.source]
        assert cells, f"no cell constructs a {view}"
        shown = [o for c in cells for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        assert shown, f"the {view} cell displayed no widget"


CHECKS = {"01_feature_gap_first_look.ipynb": check_first_look}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    shutil.copy(path, tmp_path / path.name)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    CHECKS.get(path.name, lambda nb: None)(nb)


def test_every_notebook_has_its_check():
    assert NOTEBOOKS, "notebooks/ should hold at least one tutorial"
    assert {p.name for p in NOTEBOOKS} <= set(CHECKS), "give each tutorial a check of what it should show"


def test_gap_lines_are_read_as_printed():
    text = ("standard  pool: mean gap L2 13.081 [95% CI 12.888, 13.290]  robust accuracy   0.2%  (n = 500, PGD-10, ε = 0.3)\n"
            "pgd_at    pool: mean gap L2  3.608 [95% CI 3.531, 3.686]  robust accuracy  65.8%  (n = 500, PGD-10, ε = 0.3)\n")
    assert gap_lines(text) == {"standard": {"mean": 13.081, "lo": 12.888, "hi": 13.29, "acc": 0.2, "n": 500.0},
                               "pgd_at": {"mean": 3.608, "lo": 3.531, "hi": 3.686, "acc": 65.8, "n": 500.0}}
