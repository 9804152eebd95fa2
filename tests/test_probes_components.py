"""Tests of the components probe on models that are not AFD students: the probe needs only
``components(x)`` (and, for ŷc, the model's own ``confused_target``), checked against NumPy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from featgap.errors import FeatgapError
from featgap.probes import COLUMNS, COMPONENT_STATS, adversarial_examples, component_norms, summarize

pytestmark = pytest.mark.usefixtures("one_thread")


class Split(nn.Module):
    """A linear classifier whose 6-dim input is split into two components: the first and last 3 values."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 4)
        with torch.no_grad():
            self.head.weight.copy_(torch.arange(12.0).view(4, 3) / 10 - 0.5)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1)[:, :3])

    def components(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)
        return {"f1": flat[:, :3], "f2": flat[:, 3:]}


class SplitWithHeads(Split):
    """The same, with two heads and a rule of its own for the confused target: the next class."""

    def components(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = super().components(x)
        return {**c, "logits1": self.head(c["f1"]), "logits2": self.head(c["f2"])}

    def confused_target(self, logits1: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y + 1) % logits1.shape[1]


def numpy_components(x: np.ndarray) -> dict[str, np.ndarray]:
    f1, f2 = x.reshape(len(x), -1)[:, :3].astype(np.float64), x.reshape(len(x), -1)[:, 3:].astype(np.float64)
    n1, n2 = np.linalg.norm(f1, axis=1), np.linalg.norm(f2, axis=1)
    return {"f1_norm": n1, "f2_norm": n2, "cos_f1_f2": (f1 * f2).sum(1) / (n1 * n2)}


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 1, 2, 3, generator=g) * 0.8 + 0.1
    x_adv = (x + 0.1 * (torch.rand(x.shape, generator=g) - 0.5)).clamp(0, 1)
    return x, torch.tensor([0, 1, 2, 3, 0, 1, 2]), x_adv


def test_any_model_with_components_against_numpy(data):
    x, y, x_adv = data
    t = component_norms(Split(), x, y, x_adv, batch_size=3)
    assert isinstance(t, pd.DataFrame) and len(t) == 14
    assert list(t.columns) == ["sample", "label", "input", "f1_norm", "f2_norm", "cos_f1_f2"]  # no ŷc without a rule
    assert set(t.columns) <= set(COLUMNS)
    assert list(t["input"]) == ["nat"] * 7 + ["adv"] * 7 and list(t["sample"]) == list(range(7)) * 2
    assert list(t["label"]) == y.tolist() * 2
    for kind, images in (("nat", x), ("adv", x_adv)):
        rows, want = t[t["input"] == kind], numpy_components(images.numpy())
        for k, v in want.items():
            np.testing.assert_allclose(rows[k].to_numpy(), v, rtol=1e-5, err_msg=f"{kind} {k}")
    # a summary takes the measures the table has
    s = summarize(t, by="input", metrics=[m for m in COMPONENT_STATS if m in t.columns], n_boot=0)
    assert list(s["input"]) == ["nat", "adv"] and s["f1_norm_mean"][0] == pytest.approx(
        numpy_components(x.numpy())["f1_norm"].mean())


def test_the_model_decides_the_confused_target(data):
    x, y, x_adv = data
    model = SplitWithHeads()
    t = component_norms(model, x, y, x_adv)
    assert list(t.columns)[-2:] == ["y_conf", "conf_hit"]
    for kind, images in (("nat", x), ("adv", x_adv)):
        rows = t[t["input"] == kind]
        assert rows["y_conf"].tolist() == ((y + 1) % 4).tolist()  # the model's rule, not AFD's
        f2 = images.flatten(1)[:, 3:].numpy().astype(np.float64)
        logits2 = f2 @ model.head.weight.detach().numpy().T.astype(np.float64)
        assert rows["conf_hit"].tolist() == (logits2.argmax(1) == (y.numpy() + 1) % 4).tolist()


def test_components_probe_attacks_itself_and_checks_input(data):
    x, y, _ = data
    model = SplitWithHeads()
    made = adversarial_examples(model, x, y, eps=0.1, steps=3, seed=0)
    pd.testing.assert_frame_equal(component_norms(model, x, y, eps=0.1, steps=3),
                                  component_norms(model, x, y, made))
    with pytest.raises(FeatgapError, match="components"):
        component_norms(nn.Sequential(nn.Flatten(), nn.Linear(6, 4)), x, y, x)
    with pytest.raises(FeatgapError, match="give x_adv, or eps"):
        component_norms(model, x, y)
    with pytest.raises(FeatgapError, match="shape"):
        component_norms(model, x, y, x[:3])
    with pytest.raises(FeatgapError, match="labels"):
        component_norms(model, x, y[:3], x)

    class Wrong(Split):
        def components(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"z": x.flatten(1)}

    with pytest.raises(FeatgapError, match="'f1' and 'f2'"):
        component_norms(Wrong(), x, y, x)
