"""featgap.train.step_log: per-step numbers stay on the device until a read, which sums exactly as
per-step float() did and names the first non-finite loss by its own step."""

from __future__ import annotations

import math

import torch

from featgap.train import step_log
from featgap.train.step_log import READ_EVERY, StepLog


class Watched(torch.Tensor):
    """A tensor that records every torch function applied to it (to see when it is read)."""

    calls: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        Watched.calls.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_sums_equal_per_step_float_and_bf16_is_exact():
    gen = torch.Generator().manual_seed(0)
    log, want, seen = StepLog(), {}, 0
    for step in range(45):
        batch = 128 if step < 44 else 17
        values = {"loss": torch.rand((), generator=gen) * 3, "acc": torch.rand((), generator=gen).to(torch.bfloat16),
                  "lr_scale": 0.1 * step}  # a plain number too
        log.add(values, batch)
        for k, v in values.items():
            want[k] = want.get(k, 0.0) + float(v) * batch
        seen += batch
        if log.due(step, 45):
            sums, n, bad = log.read()
            assert n == seen and bad is None
            assert sums == want  # bit for bit: the same floats added in the same order
    assert [i for i in range(45) if StepLog.due(i, 45)] == [READ_EVERY - 1, 2 * READ_EVERY - 1, 44]


def test_nothing_is_read_from_a_step_until_read():
    Watched.calls = []
    log = StepLog()
    for _ in range(3):
        log.add({"loss": torch.tensor(1.5).as_subclass(Watched)}, 8)
    touched = set(Watched.calls) - {"detach", "__get__"}
    assert not touched, f"add() used the value: {touched}"
    sums, seen, _ = log.read()
    assert sums == {"loss": 1.5 * 24} and seen == 24
    assert "stack" in Watched.calls  # every pending step in one stack, one copy


def test_the_first_non_finite_loss_is_named_by_its_step(monkeypatch):
    monkeypatch.setattr(step_log, "READ_EVERY", 10)
    log = StepLog()
    for step in range(10):
        loss = float("nan") if step == 3 else (float("inf") if step == 6 else 1.0)
        log.add({"loss": torch.tensor(loss)}, 4)
        if step < 9:
            assert not log.due(step, 100)
    assert log.due(9, 100)
    sums, seen, bad = log.read()
    assert bad is not None and bad[0] == 3 and math.isnan(bad[1])
    assert seen == 40 and math.isnan(sums["loss"])  # the averages see it too (torchrun stops every rank on it)
    log.add({"loss": torch.tensor(2.0)}, 4)
    assert log.read()[2][0] == 3  # the first stays the first
