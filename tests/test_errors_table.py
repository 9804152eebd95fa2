"""Every row of docs/errors.md, tested: bad input is one line, exit code 2, no traceback, nothing written.

The table is the source of the cases. A command-line row's *input* cell is the command this test
runs (``RUN``, ``OUT``, ``FILE``, ``DIR``, ``NOWHERE`` replaced by real paths), its *message* cell
(the first text in backticks) must appear in the one line on stderr. A row whose input is damaged
first (its setup in italics) needs an entry in :data:`SETUP`; a Python row needs one in :data:`API`.
A row without a test, or a test without a row, fails :func:`test_the_table_and_the_tests_match`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from featgap.cli import main
from featgap.errors import FeatgapError

TABLE = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


def _rows() -> dict[str, dict[str, str]]:
    """``{id: {"input": ..., "command": ..., "message": ..., "setup": bool}}`` from docs/errors.md."""
    rows: dict[str, dict[str, str]] = {}
    for line in TABLE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4, f"a row of docs/errors.md needs 4 cells: {line}"
        row_id = re.fullmatch(r"`([a-z0-9-]+)`", cells[0])
        assert row_id, f"the first cell must be an id in backticks: {line}"
        spans = re.findall(r"`([^`]+)`", cells[1])
        message = re.findall(r"`([^`]+)`", cells[2])
        assert spans and message and cells[3], f"input, message and where it is checked: {line}"
        assert row_id.group(1) not in rows, f"id {row_id.group(1)} appears twice"
        rows[row_id.group(1)] = {"input": cells[1], "command": spans[-1], "message": message[0],
                                 "setup": cells[1].startswith("*")}
    return rows


ROWS = _rows()
CLI_IDS = [i for i, r in ROWS.items() if r["command"].startswith("featgap ")]
API_IDS = [i for i, r in ROWS.items() if not r["command"].startswith("featgap ")]


# ----------------------------------------------------------------------------- shared inputs
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, one_thread):
    """A finished tiny run: smallcnn, standard training, 1 epoch on mnist5k (~2 s)."""
    from featgap.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("errors_table") / "run"
    Trainer(TrainConfig(method="standard", epochs=1, batch_size=500, monitor_n=0), out=out).fit()
    return out


@pytest.fixture(scope="module")
def images():
    """``(x, y)``: 10 stratified mnist5k test images as floats in [0, 1], and their labels."""
    from featgap import data

    return data.load("mnist5k", "test").stratified_subset(10, 0).tensors()


def _edit_config(run: Path, change: Callable[[dict], None]) -> None:
    config = json.loads((run / "config.json").read_text())
    change(config)
    (run / "config.json").write_text(json.dumps(config))


def _cut_config(run: Path) -> None:
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[: len(text) // 2])


def _cut_weights(run: Path) -> None:
    path = run / "checkpoints" / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_weights(run: Path) -> None:
    path = run / "checkpoints" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:40] = b"{\"not\": a header, nor JSON ~~~~~"  # the 8-byte length stays, the JSON header breaks
    path.write_bytes(bytes(data))


def _npz(**arrays: np.ndarray) -> Callable[[Path, Path], None]:
    def write(run: Path, file: Path) -> None:
        with open(file, "wb") as f:
            np.savez(f, **arrays)
    return write


def _resnet_weights(run: Path, file: Path) -> None:
    from featgap import models, runs

    runs.write_tensors(file, models.create("resnet18", 10, 1).state_dict())


SETUP: dict[str, Callable[[Path, Path], None]] = {
    "run-dir-no-checkpoint": lambda run, file: shutil.rmtree(run / "checkpoints"),
    "run-dir-unfinished-report": lambda run, file: (run / "summary.json").unlink(),
    "config-invalid-json": lambda run, file: _cut_config(run),
    "config-invalid-json-init": lambda run, file: _cut_config(run),
    "config-invalid-json-report": lambda run, file: _cut_config(run),
    "config-not-an-object": lambda run, file: (run / "config.json").write_text("[1, 2]"),
    "config-no-model-card": lambda run, file: _edit_config(run, lambda c: c.pop("model_card")),
    "config-no-config": lambda run, file: _edit_config(run, lambda c: c.pop("config")),
    "checkpoint-truncated": lambda run, file: _cut_weights(run),
    "checkpoint-corrupt": lambda run, file: _corrupt_weights(run),
    "checkpoint-other-architecture": _resnet_weights,
    "checkpoint-other-class-count": lambda run, file: _edit_config(
        run, lambda c: c["model_card"].update(num_classes=7)),
    "out-is-a-file": lambda run, file: file.write_text("not a folder\n"),
    "extra-object-array": _npz(image=np.array([object(), 1], dtype=object), label=np.array([0, 1])),
    "extra-wrong-shape": _npz(image=np.zeros((4, 3, 32, 32), np.uint8), label=np.zeros(4, np.int64)),
    "extra-missing-keys": _npz(x=np.zeros(3)),
    "extra-labels-out-of-range": _npz(image=np.zeros((2, 28, 28), np.uint8), label=np.array([0, 11])),
    "extra-nan": _npz(image=np.full((2, 28, 28), np.nan, np.float32), label=np.array([0, 1])),
    "extra-empty": _npz(image=np.zeros((0, 28, 28), np.uint8), label=np.zeros(0, np.int64)),
    "extra-not-npz": lambda run, file: file.write_text("image,label\n0,1\n"),
}
"""How a row's input is damaged or its ``FILE`` prepared: ``setup(run_copy, file)``."""


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: ``{relative path: (size, mtime_ns)}``."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def _prepare(row_id: str, tmp_path: Path, trained_run: Path) -> dict[str, str]:
    """Copy the run, apply the row's setup, and return the placeholders' paths."""
    run, file = tmp_path / "run", tmp_path / "file.npz"
    shutil.copytree(trained_run, run)
    if row_id in ("checkpoint-other-architecture",):
        file = tmp_path / "weights.safetensors"
    elif row_id == "out-is-a-file":
        file = tmp_path / "file.txt"
    (tmp_path / "dir").mkdir()
    if row_id in SETUP:
        SETUP[row_id](run, file)
    return {"RUN": str(run), "OUT": str(tmp_path / "out"), "FILE": str(file), "DIR": str(tmp_path / "dir"),
            "NOWHERE": str(tmp_path / "nowhere")}


def _argv(command: str, paths: dict[str, str]) -> list[str]:
    words = shlex.split(command)[1:]  # without "featgap"
    return [paths.get(w, paths["NOWHERE"] + w[len("NOWHERE"):] if w.startswith("NOWHERE/") else w) for w in words]


# ----------------------------------------------------------------------------- the table itself
def test_the_table_and_the_tests_match():
    assert len(ROWS) >= 25, f"docs/errors.md has {len(ROWS)} rows; the issue asks for at least 25"
    assert set(API) == set(API_IDS), "Python rows of docs/errors.md and API cases differ: " + \
        str(set(API) ^ set(API_IDS))
    unknown_setup = set(SETUP) - set(CLI_IDS)
    assert not unknown_setup, f"SETUP for rows that are not command-line rows of docs/errors.md: {unknown_setup}"
    without_setup = [i for i in CLI_IDS if ROWS[i]["setup"] and i not in SETUP]
    assert not without_setup, f"rows with a setup in italics but no SETUP entry: {without_setup}"
    needs_file = [i for i in CLI_IDS if "FILE" in shlex.split(ROWS[i]["command"]) and i not in SETUP]
    assert not needs_file, f"rows using FILE without preparing it: {needs_file}"


# ----------------------------------------------------------------------------- command-line rows
@pytest.mark.parametrize("row_id", CLI_IDS)
def test_command_line_row(row_id, tmp_path, trained_run, capsys, monkeypatch):
    row = ROWS[row_id]
    paths = _prepare(row_id, tmp_path, trained_run)
    monkeypatch.chdir(tmp_path)  # a stray relative write would show in the snapshot too
    before = _snapshot(tmp_path)
    try:
        code = main(_argv(row["command"], paths))
    except SystemExit as exit_info:  # argparse's usage errors
        code = exit_info.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, f"{row_id}: exit code {code}, stderr {captured.err!r}"
    assert len(lines) == 1, f"{row_id}: stderr is not one line: {captured.err!r}"
    assert lines[0].startswith("featgap: error: "), lines[0]
    assert row["message"] in lines[0], f"{row_id}: {row['message']!r} not in {lines[0]!r}"
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(tmp_path) == before, f"{row_id} wrote or changed files"


@pytest.mark.parametrize("row_id", ["config-invalid-json", "extra-object-array"])
def test_a_real_process_prints_no_traceback(row_id, tmp_path, trained_run):
    """The in-process rows above, as a user meets them: a fresh ``python -m featgap`` process."""
    paths = _prepare(row_id, tmp_path, trained_run)
    before = _snapshot(tmp_path)
    env = {**os.environ, "FEATGAP_PROGRESS": "0"}
    result = subprocess.run([sys.executable, "-m", "featgap", *_argv(ROWS[row_id]["command"], paths)],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and ROWS[row_id]["message"] in lines[0]
    assert _snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- Python rows
def _model(run: Path):
    from featgap import runs

    return runs.load(run)


def _gap(ctx, x_change=None, y_change=None, **kw):
    from featgap import probes

    x, y = ctx.images
    x = x_change(x) if x_change else x
    y = y_change(y) if y_change else y
    return probes.gap_table(_model(ctx.run), x, y, **{"eps": 0.1, "steps": 1, **kw})


def _evaluate(ctx, data=None, **kw):
    from featgap import data as fg_data
    from featgap.evaluate import evaluate

    test = fg_data.load("mnist5k", "test") if data is None else data(fg_data)
    return evaluate(_model(ctx.run), test, **{"pgd_steps": 1, "autoattack": False, "n": 10, **kw})


def _three_channels(fg_data):
    return fg_data.ImageSet(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.long),
                            fg_data.info("cifar10"), "test")


def _lipschitz(ctx):
    from featgap import probes

    x, y = ctx.images
    return probes.local_lipschitz(_model(ctx.run), x.repeat(1, 3, 1, 1), y, eps=0.1, steps=1)


def _trainer_lr_nan(ctx):
    from featgap.train import TrainConfig, Trainer

    return Trainer(TrainConfig(lr=math.nan, epochs=1, monitor_n=0), out=ctx.out)


def _trainconfig_type(ctx):
    from featgap.train import TrainConfig

    return TrainConfig(epochs="3").resolved()  # type: ignore[arg-type]


def _runs_load(ctx, **kw):
    from featgap import runs

    return runs.load(ctx.run, **kw)


def _data_load(*args):
    def call(ctx):
        from featgap import data

        return data.load(*[str(ctx.nowhere) if a == "NOWHERE" else a for a in args])
    return call


API: dict[str, tuple[Callable[[Path], None] | None, Callable[[object], object]]] = {
    "images-outside-0-1": (None, lambda ctx: _gap(ctx, lambda x: x * 3)),
    "images-nan": (None, lambda ctx: _gap(ctx, lambda x: x * math.nan)),
    "images-channels": (None, lambda ctx: _gap(ctx, lambda x: x.repeat(1, 3, 1, 1))),
    "images-shape": (None, lambda ctx: _gap(ctx, lambda x: x[:, 0])),
    "images-channels-lipschitz": (None, _lipschitz),
    "labels-out-of-range": (None, lambda ctx: _gap(ctx, y_change=lambda y: y + 10)),
    "probe-empty": (None, lambda ctx: _gap(ctx, lambda x: x[:0], lambda y: y[:0])),
    "probe-batch-size-0": (None, lambda ctx: _gap(ctx, batch_size=0)),
    "probe-norm": (None, lambda ctx: _gap(ctx, norm="foo")),
    "eval-empty": (None, lambda ctx: _evaluate(ctx, lambda d: d.load("mnist5k", "test").subset([]), n=None)),
    "eval-other-dataset": (None, lambda ctx: _evaluate(ctx, _three_channels, n=None)),
    "eval-batch-size-0": (None, lambda ctx: _evaluate(ctx, batch_size=0)),
    "data-load-unknown-split": (None, _data_load("mnist5k", "val")),
    "data-load-missing": (None, _data_load("cifar10", "test", "NOWHERE")),
    "runs-load-json": (_cut_config, _runs_load),
    "runs-load-epoch": (None, lambda ctx: _runs_load(ctx, epoch=3)),
    "trainconfig-type": (None, _trainconfig_type),
    "trainer-lr-nan": (None, _trainer_lr_nan),
}
"""Python rows: ``(damage the run copy or None, the call)``; the call gets a context with ``run``,
``images``, ``out`` (must not appear) and ``nowhere`` (does not exist)."""


class _Context:
    def __init__(self, run: Path, images: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
        self.run, self.images, self.out, self.nowhere = run, images, tmp_path / "out", tmp_path / "nowhere"


@pytest.mark.parametrize("row_id", API_IDS)
def test_python_row(row_id, tmp_path, trained_run, images):
    damage, call = API[row_id]
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    if damage is not None:
        damage(run)
    before = _snapshot(tmp_path)
    with pytest.raises(FeatgapError) as err:
        call(_Context(run, images, tmp_path))
    message = str(err.value)
    assert "\n" not in message, f"{row_id}: more than one line: {message!r}"
    assert ROWS[row_id]["message"] in message, f"{row_id}: {ROWS[row_id]['message']!r} not in {message!r}"
    assert _snapshot(tmp_path) == before, f"{row_id} wrote or changed files"
