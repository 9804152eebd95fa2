"""Security of artefacts (issue 17): weights load only from safetensors, nothing is ever unpickled.

Every place that accepts a checkpoint is offered a crafted pickle whose unpickling would create a
file (``__reduce__`` returning ``(open, (path, "w"))``): each must refuse it with a one-line
:class:`FeatgapError`, and the file must never appear. Third-party torch state dicts go through
``torch.load(weights_only=True)``; CIFAR's pickled batches through a restricted unpickler.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from featgap import runs
from featgap.cli import main
from featgap.errors import FeatgapError
from featgap.models import create


class Payload:
    """Unpickling this object calls ``open(marker, "w")``: the file appears if any loader unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


class ShellPayload(Payload):
    """Unpickling this object runs ``touch marker`` in a shell."""

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch '{self.marker}'",))


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text.strip(), text
    return text


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture(params=["pickle", "torch.save"])
def evil(request, tmp_path, marker) -> Path:
    """A malicious checkpoint: a raw pickle (protocol 2) or a torch.save zip, each hiding a :class:`Payload`."""
    path = tmp_path / "evil.pt"
    state = {"weight": torch.zeros(2), "payload": Payload(marker)}
    if request.param == "pickle":
        with open(path, "wb") as f:
            pickle.dump(state, f, protocol=2)
    else:
        torch.save(state, path)
    assert not marker.exists()
    return path


def _run_dir(root: Path) -> Path:
    """A run directory with a real config.json and final weights of an untrained smallcnn (no training)."""
    model = create("smallcnn", 10, 1)
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    card = {"name": "smallcnn", "num_classes": 10, "in_channels": 1, "feature_dim": model.feature_dim,
            "mean": [0.0], "std": [1.0], "layer_names": list(model.layer_names)}
    (run / runs.CONFIG).write_text(json.dumps({"config": {"method": "standard", "dataset": "mnist5k",
                                                          "model": "smallcnn", "eps": 0.3, "norm": "linf"},
                                               "model_card": card}))
    runs.write_tensors(run / runs.FINAL, model.state_dict())
    return run


def test_a_real_safetensors_run_still_loads(tmp_path):
    run = _run_dir(tmp_path)
    assert isinstance(runs.load(run), torch.nn.Module)


def test_read_tensors_refuses_a_pickle(evil, marker):
    with pytest.raises(FeatgapError, match="refusing .*never unpickles") as err:
        runs.read_tensors(evil)
    _one_line(err.value)
    assert not marker.exists()


def test_read_tensors_refuses_a_pickle_renamed_to_safetensors(evil, marker, tmp_path):
    renamed = tmp_path / "model.safetensors"
    evil.rename(renamed)
    with pytest.raises(FeatgapError, match="refusing"):
        runs.read_tensors(renamed)
    assert not marker.exists()


@pytest.mark.parametrize("which", [runs.FINAL, runs.LAST, "checkpoints/epoch_002.safetensors"])
def test_runs_load_refuses_a_checkpoint_replaced_by_a_pickle(evil, marker, tmp_path, which):
    run = _run_dir(tmp_path)
    if which != runs.FINAL:
        (run / runs.FINAL).unlink()
    (run / which).write_bytes(evil.read_bytes())
    with pytest.raises(FeatgapError, match="refusing") as err:
        runs.load(run, epoch=2) if "epoch" in which else runs.load(run)
    _one_line(err.value)
    assert not marker.exists()


def test_init_weights_refuse_a_pickle(evil, marker):
    with pytest.raises(FeatgapError, match="refusing"):
        runs.load_init_weights(create("smallcnn", 10, 1), evil, "smallcnn")
    assert not marker.exists()


def test_featgap_train_init_refuses_a_pickle(evil, marker, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["train", "--method", "vaft", "--init", str(evil), "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "refusing" in err[0], err
    assert not marker.exists()


def test_the_widgets_run_picker_refuses_a_replaced_checkpoint(evil, marker, tmp_path):
    from featgap.widgets.base import load_model

    run = _run_dir(tmp_path)
    (run / runs.FINAL).write_bytes(evil.read_bytes())
    with pytest.raises(FeatgapError, match="refusing"):
        load_model(run)
    with pytest.raises(FeatgapError):
        load_model(evil)  # a file is not a run directory: refused before anything reads it
    assert not marker.exists()


def test_third_party_state_dicts_load_with_weights_only(evil, marker, tmp_path):
    """read_torch_state_dict (bring-your-own-model) uses torch.load(weights_only=True): plain tensors
    load, a file hiding code is a one-line FeatgapError raised before the code runs."""
    good = tmp_path / "good.pth"
    state = {"fc.weight": torch.arange(6.0).view(2, 3), "fc.bias": torch.zeros(2)}
    torch.save(state, good)
    loaded = runs.read_torch_state_dict(good)
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    torch.save({"state_dict": state, "epoch": 3}, good)
    assert set(runs.read_torch_state_dict(good)) == set(state)
    with pytest.raises(FeatgapError, match="refusing .*weights_only=True") as err:
        runs.read_torch_state_dict(evil)
    _one_line(err.value)
    assert not marker.exists()
    assert "weights_only=True" in runs.read_torch_state_dict.__doc__


@pytest.mark.parametrize("payload", [Payload, ShellPayload])
def test_cifar_batches_refuse_a_code_running_payload(tmp_path, marker, payload):
    """The restricted unpickler refuses a CIFAR batch whose pickle calls a function; nothing runs."""
    from featgap import data
    from featgap.data.torchvision_sets import read_cifar_batch

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    entry = {"labels": [0, 1], "data": np.zeros((2, 3072), np.uint8), "payload": payload(marker)}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]:
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (io|builtins|posix|os)\.(open|system)"):
        read_cifar_batch(folder / "test_batch", "labels")
    with pytest.raises(FeatgapError, match="refusing to load") as err:
        data.load("cifar10", "test", root=tmp_path)
    _one_line(err.value)
    assert not marker.exists()
