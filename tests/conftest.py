"""Shared test setup: progress bars off, torch seeded before every test."""

from __future__ import annotations

import os

import pytest
import torch

# Set at import, before any featgap module reads it; an explicit value from the caller wins.
os.environ.setdefault("FEATGAP_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions gain nothing from a 2nd thread on a shared 2-core machine; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fit_briefly(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 3, batch: int = 50) -> None:
    """A few epochs of Adam on (x, y): enough for a smallcnn to classify digits well above chance."""
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for i in range(0, len(y), batch):
            loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()


@pytest.fixture(scope="session")
def briefly_trained():
    """The :func:`fit_briefly` helper, as a fixture (conftest functions are not importable)."""
    return fit_briefly


class ModeRecorder(torch.nn.Module):
    """An identity layer that records ``self.training`` on every forward pass into ``seen``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        return x


@pytest.fixture
def recording_smallcnn():
    """``(model, seen)``: a smallcnn whose stage2 records its train/eval mode at every forward pass."""
    from featgap.models import create

    torch.manual_seed(0)
    model = create("smallcnn", 10, 1)
    recorder = ModeRecorder()
    model.stage2.append(recorder)
    return model, recorder.seen


@pytest.fixture(scope="session")
def widget_runs(tmp_path_factory):
    """Small real runs for the plots and widgets tests, trained once per session (~20 s on 2 cores).

    ``{"standard": dir, "pgd_at": dir, "afd": dir, "data": (x, y)}``: smallcnn on mnist5k —
    standard training (2 epochs), PGD-AT (2 epochs, ε ramped, checkpoints kept every epoch when
    the Trainer supports it) and AFD fine-tuned from the standard run (1 epoch); each run has an
    ``eval.json`` written by :func:`featgap.evaluate.evaluate` (n = 40, no AutoAttack); ``data`` is a
    stratified 40-image test subset as float tensors.
    """
    from dataclasses import fields

    from featgap import data, runs
    from featgap.evaluate import evaluate
    from featgap.train import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("widget_runs")
    test = data.load("mnist5k", "test")
    common = dict(dataset="mnist5k", model="smallcnn", lr=0.05, monitor_n=100, probe_n=40)
    keep = {"keep_checkpoints": 1} if "keep_checkpoints" in {f.name for f in fields(TrainConfig)} else {}
    configs = {
        "standard": TrainConfig(method="standard", epochs=2, **common),
        "pgd_at": TrainConfig(method="pgd_at", epochs=2, eps_warmup_epochs=1, attack_steps=3, **common, **keep),
        "afd": TrainConfig(method="afd", epochs=1, attack_steps=3, init=str(root / "standard"), **common),
    }
    out = {}
    for name, cfg in configs.items():
        Trainer(cfg, out=root / name).fit()
        model = runs.load(root / name)
        result = evaluate(model, test, n=40, autoattack=False, pgd_steps=5)
        runs.write_json(root / name / "eval.json", result.as_dict())
        out[name] = root / name
    x, y = test.stratified_subset(40, 0).tensors()
    out["data"] = (x, y)
    return out


class QuantisedInput(torch.nn.Module):
    """Shattered gradients, a masked model on purpose: the input is rounded to 5 grey levels before
    ``model``, so the function is piecewise constant and its input gradient exactly zero."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)
