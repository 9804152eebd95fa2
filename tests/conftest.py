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
