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
