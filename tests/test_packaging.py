"""The package's promises about itself: dependency lists agree, the console script exists."""

from __future__ import annotations

import re
import subprocess
import sys
import pytest

tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11 (CI runs 3.11)
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _names(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", spec)
        assert m, spec
        out[m.group(1).lower()] = m.group(2).replace(" ", "")
    return out


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = _names(pyproject["project"]["dependencies"])
    yml = (ROOT / "environment.yml").read_text()
    pip_lines = [line.strip()[2:] for line in yml.splitlines()
                 if line.strip().startswith("- ") and not line.strip().startswith(("- pip", "- python", "- -e"))
                 and line.startswith("      ")]
    assert _names(pip_lines) == declared


def test_dependencies_have_lower_bounds_only_and_no_torchattacks():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all(">=" in d and "<" not in d.replace(">=", "") and "==" not in d for d in deps), deps
    assert not any(d.lower().startswith("torchattacks") for d in deps)


def test_python_m_featgap_is_the_featgap_command():
    out = subprocess.run([sys.executable, "-m", "featgap", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "demo" in out.stdout


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, re.M)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_plotly_figurewidget_has_its_anywidget():
    """plotly ≥ 6 builds FigureWidget on anywidget: when plotly is 6+, anywidget must be installed at
    the floor pyproject.toml declares, and a FigureWidget must construct (else every view fails)."""
    from importlib.metadata import version

    import plotly
    import plotly.graph_objects as go

    deps = _names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert deps.get("anywidget", "").startswith(">="), "pyproject.toml must list anywidget with a lower bound"
    if _version(plotly.__version__)[0] >= 6:
        import anywidget  # noqa: F401 - must import

        assert _version(version("anywidget")) >= _version(deps["anywidget"]), (version("anywidget"), deps["anywidget"])
    fw = go.FigureWidget(go.Scatter(x=[0, 1], y=[1, 0]))
    assert list(fw.data[0].x) == [0, 1]


def test_run_provenance_records_versions_without_importing_torchvision_or_autoattack():
    """environment_info() goes into every config.json; importing torchvision only to read its version cost 0.37 s."""
    import subprocess
    import sys

    code = ("import sys; from featgap import runs; i = runs.environment_info(); "
            "print(i['torchvision'], i['pyautoattack'], 'torchvision' in sys.modules, 'pyautoattack' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    import torchvision

    assert out == [torchvision.__version__, out[1], "False", "False"] and out[1] != "None"
