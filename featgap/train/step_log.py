"""The training loop's per-step numbers, kept on the device and read every few steps.

Reading a CUDA tensor on the host (``float(loss)``, ``loss.item()``) makes the CPU wait until the
GPU has finished every queued kernel: done after each step, it stalls the queue that keeps the
GPU busy while Python prepares the next step. :class:`StepLog` keeps each step's loss and metrics
as 0-d tensors on the device and copies them to the host in one transfer every
:data:`READ_EVERY` steps (and at the end of the epoch), where the averages for the progress bar
and ``metrics.jsonl`` are summed and a non-finite loss is found, with the step it came from::

    log = StepLog()
    for i, (x, y) in enumerate(loader):
        loss, metrics = method.loss(model, x, y, eps)
        ...
        log.add({"loss": loss.detach(), **metrics}, len(y))
        if log.due(i, len(loader)):
            sums, seen, bad = log.read()     # one host transfer; bad = (step index, value) or None

The sums equal ``Σ float(v) · batch`` over the steps, in Python floats (the order and precision of
the per-step ``float(v)`` the loop used before), so a run's records do not change. On a CPU the
transfer is free and the numbers are the same; a non-finite loss is then seen at most
``READ_EVERY − 1`` steps later than a per-step check would, and still named by its own step.
"""

from __future__ import annotations

import math

import torch

READ_EVERY = 20
"""Steps between two host reads of the step log: one host synchronisation per this many steps."""


class StepLog:
    """Per-step scalars (loss and metrics) of one epoch, on the device until :meth:`read`.

    ``sums[k]`` is ``Σ_steps value_k · batch_size`` and ``seen`` the images so far, both over the
    whole epoch; ``first_bad`` the ``(step index, loss)`` of the first non-finite loss, if any.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.seen = 0
        self.first_bad: tuple[int, float] | None = None
        self._pending: list[tuple[int, int, dict[str, torch.Tensor | float]]] = []  # (step, batch, values)
        self._step = 0

    def add(self, values: dict[str, torch.Tensor | float], batch: int) -> None:
        """Keep one step's ``values`` (0-d tensors on any device, or numbers; ``"loss"`` among them) for
        a batch of ``batch`` images. Nothing is read from the device here."""
        self._pending.append((self._step, batch, {k: v.detach() if torch.is_tensor(v) else v
                                                  for k, v in values.items()}))
        self._step += 1

    @staticmethod
    def due(i: int, steps: int) -> bool:
        """Whether step ``i`` (0-based) of ``steps`` is one after which to :meth:`read`."""
        return (i + 1) % READ_EVERY == 0 or i + 1 == steps

    def read(self) -> tuple[dict[str, float], int, tuple[int, float] | None]:
        """Copy the pending steps to the host in one transfer and add them up: ``(sums, seen, first_bad)``."""
        if self._pending:
            # the tensors of every pending step in one stack (float32: exact for bf16/fp16/fp32 values),
            # one copy to the host; plain numbers are taken as they are
            tensors = [v.reshape(()).float() for _, _, vals in self._pending for v in vals.values() if torch.is_tensor(v)]
            host = iter(torch.stack(tensors).cpu().tolist() if tensors else [])  # the one synchronisation
            for step, batch, vals in self._pending:
                row = {k: next(host) if torch.is_tensor(v) else float(v) for k, v in vals.items()}
                if self.first_bad is None and not math.isfinite(row["loss"]):
                    self.first_bad = (step, row["loss"])
                for k, v in row.items():
                    self.sums[k] = self.sums.get(k, 0.0) + v * batch
                self.seen += batch
            self._pending.clear()
        return dict(self.sums), self.seen, self.first_bad
