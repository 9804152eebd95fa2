"""The package's layering (drawn in ``featgap/__init__.py``'s docstring) holds for every import.

An AST walk over ``featgap/`` reads each ``import`` statement, at module level or inside a
function, ``if TYPE_CHECKING`` blocks included, so a deferred import cannot hide a dependency
that goes the wrong way.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "featgap"

TIERS: dict[str, int] = {
    "errors": 0, "progress": 0, "cache": 0,
    "data": 1, "threads": 1, "jobs": 1,
    "models": 2,
    "attacks": 3,
    "runs": 4,
    "probes": 5, "methods": 5,
    "train": 6, "evaluate": 6, "presets": 6,
    "plots": 7,
    "widgets": 8, "report": 8,
    "demo": 9, "exercises": 9,
    "cli": 10,
    "__main__": 11,
}
"""Top-level module or sub-package of featgap -> its tier. A module may import its own top-level
unit and strictly lower tiers only (so two units on one tier never import each other)."""


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, dotted featgap module) for every import in ``path``, resolved to the most specific
    featgap module that exists (``from featgap import data`` -> ``featgap.data``)."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for target in targets:
            if not target.startswith("featgap"):
                continue
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if (node.lineno, target) not in out:
                out.append((node.lineno, target))
    return out


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_has_a_tier():
    units = {_unit(m) for m in MODULES} - {None}
    assert not units - set(TIERS), f"add these to TIERS and featgap/__init__.py's docstring: {units - set(TIERS)}"


def test_no_module_imports_a_higher_or_sibling_layer():
    wrong = []
    for module, path in MODULES.items():
        source = _unit(module)
        if source is None:  # featgap/__init__.py: lazy attribute access only
            continue
        for line, target in _imported(module, path):
            dest = _unit(target)
            if dest is None or dest == source:
                continue
            if TIERS[dest] >= TIERS[source]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({source}, tier {TIERS[source]}) imports "
                             f"{target} ({dest}, tier {TIERS[dest]})")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(wrong)


def test_no_module_imports_a_private_name_of_another_unit():
    """``from featgap.attacks.pgd import _project`` in a probe couples it to a helper nobody promised."""
    wrong = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("featgap"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and _unit(node.module) != _unit(module):
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {', '.join(private)} "
                                 f"from {node.module}")
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_cycle():
    """Inside a unit too: no pair of modules imports each other, deferred or not."""
    graph = {m: {t for _, t in _imported(m, p) if t != m and t != "featgap"} for m, p in MODULES.items()}
    for m in graph:  # a package's __init__ re-exports its modules; an edge back to it is not a cycle
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_checker_sees_a_deferred_import_that_goes_up(tmp_path, monkeypatch):
    """The walk must find an import hidden inside a function (else the two tests above prove nothing)."""
    bad = tmp_path / "featgap" / "runs.py"
    bad.parent.mkdir()
    bad.write_text("def load():\n    from featgap.methods.afd import fold\n    return fold\n")
    monkeypatch.setitem(MODULES, "featgap.methods.afd", Path("afd.py"))
    assert (2, "featgap.methods.afd") in _imported("featgap.runs", bad)


def test_import_featgap_and_the_cli_module_do_not_import_torch():
    code = "import sys, featgap, featgap.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
