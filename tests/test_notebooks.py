"""Every tutorial and every solution notebook runs top to bottom and says what it should.

The notebooks run in one working directory for the whole session, the way a student runs the
course: the tutorials in order (``WORKDIR/0N_*.ipynb``), then the solutions
(``WORKDIR/solutions/0N_*.ipynb``). They share ``WORKDIR/runs``, so tutorial 1 trains the standard
and PGD-AT models and everything after reuses them (tutorial 2 must say so). Each notebook is
checked against its own printed numbers and displayed views (one check per notebook, shared by a
tutorial and its solution); in a tutorial every exercise check must say "not solved yet", in a
solution every one must pass. Run alone, any of these tests trains what it needs from scratch.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
TUTORIALS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SOLUTIONS = sorted((NOTEBOOK_DIR / "solutions").glob("*.ipynb"))
NOTEBOOKS = TUTORIALS + SOLUTIONS
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
RUNS_LINE = 'RUNS = Path("runs")'
SOLUTION_RUNS_LINE = 'RUNS = Path("../runs")'

GAP_LINE = re.compile(r"^(?P<run>\S+)\s+pool: mean gap L2\s+(?P<mean>[\d.]+) \[95% CI (?P<lo>[\d.]+), (?P<hi>[\d.]+)\]"
                      r"\s+robust accuracy\s+(?P<acc>[\d.]+)%\s+\(n = (?P<n>\d+),", re.MULTILINE)
ACC_PART = re.compile(r"(?P<label>clean|CE-PGD-\d+|margin-PGD-\d+|PGD-\d+|AutoAttack|robust)\s+(?P<value>[\d.]+)% "
                      r"\[\s*(?P<lo>[\d.]+),\s*(?P<hi>[\d.]+)\]")
DESCRIBE_LINE = re.compile(r"^(?P<run>\S+)\s+(?P<parts>clean .*)\(n = (?P<n>\d+), L∞ ε = (?P<eps>[\d.]+), 95% Wilson",
                           re.MULTILINE)


def gap_lines(text: str) -> dict[str, dict[str, float]]:
    """Tutorial 1's printed summary lines, ``run → {mean, lo, hi, acc, n}``."""
    return {m["run"]: {k: float(m[k]) for k in ("mean", "lo", "hi", "acc", "n")} for m in GAP_LINE.finditer(text)}


def accuracy_lines(text: str) -> dict[str, dict[str, float]]:
    """Lines printed by ``featgap.exercises.describe``: ``run → {label: value, ..., "n": n}``.

    Every accuracy must come with an interval that contains it.
    """
    out: dict[str, dict[str, float]] = {}
    for m in DESCRIBE_LINE.finditer(text):
        values: dict[str, float] = {"n": float(m["n"])}
        for part in ACC_PART.finditer(m["parts"]):
            v, lo, hi = float(part["value"]), float(part["lo"]), float(part["hi"])
            assert lo <= v <= hi, f"{m['run']} {part['label']}: {v} outside [{lo}, {hi}]"
            values[part["label"]] = v
        out[m["run"]] = values
    return out


def output_text(cell) -> str:
    """A cell's printed and displayed text, one output per line (stderr's progress bars apart)."""
    parts = []
    for o in cell.get("outputs", []):
        if "text" in o:
            parts.append(o["text"])
        if "text/plain" in o.get("data", {}):
            parts.append(o["data"]["text/plain"])
    return "\n".join(parts)


def code_text(nb) -> str:
    return "\n".join(output_text(c) for c in nb.cells if c.cell_type == "code")


def assert_views(nb, *views: str) -> None:
    """Each named view is constructed in a code cell and displayed there as a widget."""
    for view in views:
        cells = [c for c in nb.cells if c.cell_type == "code" and f"{view}(" in c.source]
        assert cells, f"no cell constructs a {view}"
        shown = [o for c in cells for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        assert shown, f"the {view} cell displayed no widget"


def check_first_look(nb, text: str) -> None:
    """Tutorial 1: the probe's numbers tell the lesson, and every view is displayed as a widget."""
    gaps = gap_lines(text)
    assert set(gaps) == {"standard", "pgd_at"}, f"expected a gap line per run, got:\n{text}"
    for run, g in gaps.items():
        assert g["lo"] <= g["mean"] <= g["hi"] and g["n"] == 500, (run, g)
    std, adv = gaps["standard"], gaps["pgd_at"]
    assert adv["hi"] < std["lo"], f"PGD-AT should shrink the gap: {adv} vs {std}"
    assert adv["acc"] >= std["acc"] + 30, f"PGD-AT should be far more robust: {adv['acc']}% vs {std['acc']}%"
    assert_views(nb, "GapExplorer", "SampleInspector", "TrainingScrubber", "EmbeddingExplorer", "RunComparer")


COMPONENT_LINE = re.compile(r"^(?P<input>nat|adv)\s+‖f1‖\s+(?P<f1>[\d.]+)\s+‖f2‖\s+(?P<f2>[\d.]+)\s+cos\(f1, f2\)\s+"
                            r"(?P<cos>[-\d.]+)\s+confused head hits ŷc\s+(?P<hit>[\d.]+)%\s+\(n = 100\)", re.MULTILINE)
FINAL_GAP = re.compile(r"^(?P<run>vaft|afd)\s+final L∞ gap (?P<mean>[\d.]+) \[95% CI (?P<lo>[\d.]+), (?P<hi>[\d.]+)\]",
                       re.MULTILINE)


def check_afd(nb, text: str) -> None:
    """Tutorial 2: both fine-tunings are robust, AFD's components and gap are printed, two views shown."""
    acc = accuracy_lines(text)
    assert set(acc) == {"standard", "vaft", "afd"}, f"expected an accuracy line per run, got:\n{text}"
    for run in ("vaft", "afd"):
        assert acc[run]["n"] == 200 and acc[run]["PGD-10"] >= acc["standard"]["PGD-10"] + 30, acc
        assert acc[run]["clean"] >= 85, acc
    comps = {m["input"]: m for m in COMPONENT_LINE.finditer(text)}
    assert set(comps) == {"nat", "adv"}, f"expected component lines for nat and adv:\n{text}"
    assert float(comps["adv"]["hit"]) > float(comps["nat"]["hit"]), "the confused head should hit ŷc more under attack"
    finals = {m["run"]: m for m in FINAL_GAP.finditer(text)}
    assert set(finals) == {"vaft", "afd"}, text
    assert_views(nb, "SampleInspector", "TrainingScrubber")


MISALIGNED = re.compile(r"^(?P<run>\S+)\s+misaligned: natural\s+(?P<nat>[\d.]+)%\s+adversarial\s+(?P<adv>[\d.]+)%",
                        re.MULTILINE)
SIZES = re.compile(r"^(?P<run>\S+)\s+median ‖f\(x\)‖\s+(?P<norm>[\d.]+)\s+median top-1 − top-2 logit margin\s+"
                   r"(?P<margin>[-\d.]+)\s+CE gradient exactly zero on\s+(?P<share>[\d.]+)% of digits", re.MULTILINE)
GROWN_ZERO = re.compile(r"^afa×(?P<scale>\d+) .*zero CE gradient on (?P<share>\d+)% of digits", re.MULTILINE)


def check_afa(nb, text: str) -> None:
    """Tutorial 3: alignment is measured, AFA is attacked three ways, and growing its features masks CE-PGD."""
    mis = {m["run"]: m for m in MISALIGNED.finditer(text)}
    assert set(mis) == {"standard", "pgd_at", "afa"}, text
    for run in ("pgd_at", "afa"):
        assert float(mis[run]["adv"]) < float(mis["standard"]["adv"]), f"{run} should keep features better aligned"
    acc = accuracy_lines(text)
    assert set(acc) == {"pgd_at", "afa", "afa×1", "afa×10", "afa×100"}, text
    for run in ("pgd_at", "afa"):
        assert acc[run]["n"] == 100 and {"clean", "CE-PGD-20", "margin-PGD-20", "AutoAttack"} <= set(acc[run]), acc
        assert acc[run]["AutoAttack"] <= min(acc[run]["CE-PGD-20"], acc[run]["margin-PGD-20"]) + 5, acc[run]
    sizes = {m["run"]: m for m in SIZES.finditer(text)}
    assert set(sizes) == {"standard", "pgd_at", "afa"}, text
    assert float(sizes["afa"]["norm"]) > 2 * float(sizes["pgd_at"]["norm"]), "contrastive training grows the features"
    grown = {int(m["scale"]): int(m["share"]) for m in GROWN_ZERO.finditer(text)}
    assert set(grown) == {1, 10, 100} and grown[100] >= 50 and grown[100] > grown[1], grown
    big = acc["afa×100"]
    assert big["CE-PGD-20"] >= big["margin-PGD-20"] + 15, f"grown features should mask CE-PGD: {big}"
    assert abs(big["clean"] - acc["afa×1"]["clean"]) <= 3, "scaling the features should barely change predictions"
    assert_views(nb, "EmbeddingExplorer", "RunComparer")


def check_evaluation(nb, text: str) -> None:
    """Tutorial 4: the honest model passes the masking checks; each masked model is caught by them."""
    acc = accuracy_lines(text)
    assert set(acc) == {"pgd_at", "saturated", "quantised"}, text
    assert all(a["n"] == 100 for a in acc.values()), acc
    assert "FLAG saturated: PGD on the logit margin is within 5 points of CE-PGD" in text, "check 6 should flag"
    assert acc["saturated"]["CE-PGD-20"] >= acc["saturated"]["margin-PGD-20"] + 10, acc["saturated"]
    assert "FLAG quantised: PGD − AA gap ≤ 10 points" in text, "check 8 should flag the quantised model"
    q = acc["quantised"]
    assert q["PGD-20"] >= q["robust"] + 30, f"Square should find what the blind PGD missed: {q}"
    honest_report = text.split("pgd_at ", 1)[1].split("saturated", 1)[0]
    assert "[FLAG] PGD on the logit margin" not in honest_report and "[FLAG] PGD − AA gap" not in honest_report, \
        f"the PGD-AT model should pass the masking checks:\n{honest_report}"
    assert_views(nb, "GapExplorer")


CLEAN_LINE = re.compile(r"^resnet18 clean accuracy (?P<acc>[\d.]+)% \[95% CI (?P<lo>[\d.]+), (?P<hi>[\d.]+)\]\s+"
                        r"\(n = 500\)", re.MULTILINE)
REL_GAP = re.compile(r"^(?P<layer>layer\d|logits)\s+relative gap\s+(?P<mean>[\d.]+) \[95% CI", re.MULTILINE)


def check_own_model(nb, text: str) -> None:
    """Tutorial 5: a torchvision ResNet-18, trained, reloaded safely, probed by layer name, in two views."""
    clean = CLEAN_LINE.search(text)
    assert clean and float(clean["acc"]) >= 80, f"the ResNet should learn the digits:\n{text}"
    assert "same logits after the round trip: True" in text
    for layer, dim in (("layer1", 64), ("layer4", 512), ("flatten", 512), ("logits", 10)):
        assert re.search(rf"^{layer}\s+\(100, {dim}\)$", text, re.MULTILINE), f"{layer} features: {text}"
    assert {m["layer"] for m in REL_GAP.finditer(text)} == {"layer1", "layer2", "layer3", "layer4", "logits"}, text
    assert_views(nb, "GapExplorer", "SampleInspector")


CHECKS = {
    "01_feature_gap_first_look.ipynb": check_first_look,
    "02_afd_disentangled_features.ipynb": check_afd,
    "03_afa_feature_alignment.ipynb": check_afa,
    "04_evaluating_robustness.ipynb": check_evaluation,
    "05_bring_your_own_model.ipynb": check_own_model,
}


def exercise_cells(nb) -> list:
    return [c for c in nb.cells if "exercise" in c.get("metadata", {}).get("tags", [])]


def check_exercises(nb, solution: bool) -> None:
    """2–4 checked exercises; unsolved in a tutorial (and still running), all passing in a solution."""
    cells = exercise_cells(nb)
    assert 2 <= len(cells) <= 4, f"expected 2–4 exercise cells, found {len(cells)}"
    for cell in cells:
        assert "check." in cell.source, f"an exercise cell without a check:\n{cell.source}"
        out = output_text(cell)
        if solution:
            assert out.startswith("✓") and "✗" not in out, f"a solution fails its check:\n{out}"
        else:
            assert out.startswith("✗") and "not solved yet" in out, f"an unsolved exercise should say so:\n{out}"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """One working directory for all notebooks: tutorials at its top, solutions in ``solutions/``."""
    path = tmp_path_factory.mktemp("tutorials")
    (path / "solutions").mkdir()
    return path


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_runs_top_to_bottom(path, workdir):
    import nbformat
    from nbclient import NotebookClient

    solution = path.parent.name == "solutions"
    where = workdir / "solutions" if solution else workdir
    shared_standard = (workdir / "runs" / "notebook01" / "standard" / "summary.json").exists()
    nb = nbformat.read(path, as_version=4)
    shutil.copy(path, where / path.name)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(where)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, "\n".join(f"{e.ename}: {e.evalue}" for e in errors)
    text = code_text(nb)
    CHECKS[path.name](nb, text)
    check_exercises(nb, solution)
    if shared_standard and not path.name.startswith("01") and "tutorial_run(" in "".join(c.source for c in nb.cells):
        assert "reusing runs/notebook01/standard" in text or "reusing ../runs/notebook01/standard" in text, \
            "a later tutorial should reuse tutorial 1's standard model"


def test_every_notebook_has_its_check_and_its_solution():
    assert len(TUTORIALS) == 5, [p.name for p in TUTORIALS]
    assert {p.name for p in TUTORIALS} == set(CHECKS), "give each tutorial a check of what it should show"
    assert [p.name for p in SOLUTIONS] == [p.name for p in TUTORIALS], "each tutorial has one solution notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_are_committed_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("name", [p.name for p in TUTORIALS])
def test_a_solution_differs_from_its_tutorial_only_in_the_exercises(name):
    import nbformat

    tutorial = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    solution = nbformat.read(NOTEBOOK_DIR / "solutions" / name, as_version=4)
    assert len(tutorial.cells) == len(solution.cells)
    for i, (t, s) in enumerate(zip(tutorial.cells, solution.cells)):
        if i == 0:
            continue  # the title says "solutions"
        if "exercise" in t.get("metadata", {}).get("tags", []):
            assert "raise NotImplementedError" in t.source and "raise NotImplementedError" not in s.source, i
            continue
        assert t.source.replace(RUNS_LINE, SOLUTION_RUNS_LINE) == s.source, f"{name}: cell {i} differs"
    runs_lines = [c.source for c in tutorial.cells if RUNS_LINE in c.source]
    assert runs_lines, f"{name} should say where its runs go ({RUNS_LINE})"


def test_gap_lines_are_read_as_printed():
    text = ("standard  pool: mean gap L2 13.081 [95% CI 12.888, 13.290]  robust accuracy   0.2%  (n = 500, PGD-10, ε = 0.3)\n"
            "pgd_at    pool: mean gap L2  3.608 [95% CI 3.531, 3.686]  robust accuracy  65.8%  (n = 500, PGD-10, ε = 0.3)\n")
    assert gap_lines(text) == {"standard": {"mean": 13.081, "lo": 12.888, "hi": 13.29, "acc": 0.2, "n": 500.0},
                               "pgd_at": {"mean": 3.608, "lo": 3.531, "hi": 3.686, "acc": 65.8, "n": 500.0}}


def test_accuracy_lines_are_read_as_describe_prints_them():
    from featgap.evaluate import EvalResult
    from featgap.exercises import describe

    r = EvalResult(n=100, eps=0.3, norm="linf", seed=0, clean=97.0, pgd=60.0, pgd_steps=20, autoattack=55.0,
                   robust=54.0, pgd_ce=80.0, pgd_margin=61.0)
    text = describe("afa", r, ("clean", "pgd_ce", "pgd_margin", "pgd", "autoattack", "robust")) + "\n"
    assert accuracy_lines(text) == {"afa": {"n": 100.0, "clean": 97.0, "CE-PGD-20": 80.0, "margin-PGD-20": 61.0,
                                            "PGD-20": 60.0, "AutoAttack": 55.0, "robust": 54.0}}
