"""Data-parallel training across processes, GPUs and machines, started by ``torchrun``.

``torchrun --nproc_per_node N -m featgap train ...`` starts N copies of ``featgap train``. Each
copy (a *rank*) finds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment, joins one
process group (NCCL on CUDA, gloo on the CPU) and trains its own replica of the model. They stay
replicas because every rank takes the *same* optimiser step:

1. **Data.** ``--batch-size`` is the *global* batch. Every rank draws the same shuffled global
   batch (same seed) and keeps its contiguous slice, rank ``r`` the ``r``-th of N
   (:func:`slice_of`); the N slices together are exactly the batch a one-process run trains on.
2. **Gradients.** After ``loss.backward()`` each rank holds the gradient of the mean loss over
   its slice. :meth:`Distributed.average_gradients` all-reduces ``n_r · g_r`` and ``n_r`` (one
   flat buffer, one collective) and divides: every rank then holds ``Σ n_r g_r / Σ n_r``, the
   gradient of the mean loss over the global batch, bit for bit the same on every rank.
3. **Step.** Same weights + same gradient + same optimiser state = the same update everywhere.

This is the algorithm of PyTorch's ``DistributedDataParallel`` (DDP) written out, without its
wrapper. featgap's methods call more than ``model(x)``: AFD's student is asked for
``components(x)``, AFA's model for ``features``, ``projection`` and ``head``, and PGD runs the
model ten times per step for input gradients only. A DDP wrapper only synchronises gradients
of a backward that follows a forward *through the wrapper*; a method calling a sub-module
directly would silently train N different models. Averaging the gradients between
``backward()`` and ``step()`` works whatever the method touches. (It does not overlap the
communication with the backward pass as DDP's buckets do; for the models featgap trains one
all-reduce per step is a small share of a PGD step's ten forward/backward passes.)

What must agree, and what must differ, across ranks:

* the same: the initial weights (same seed, then broadcast from rank 0 for good measure), the
  shuffling and augmentation of the global batch (the loader's own generator), the optimiser
  state, the lr/ε schedule, and a resumed run's weights (every rank reads the checkpoint);
* different: torch's global random stream, which draws PGD's random starts and dropout
  (:func:`rank_seed`). With identical streams every rank would start its attack from the
  same noise pattern. So a PGD-based run under torchrun is the same *algorithm* as a
  one-process run with the same global batch, not the same numbers; a method without
  randomness in its step (``standard``) gives the same weights within float tolerance.

Batch norm. A rank sees only its slice, so plain batch norm normalises with slice statistics
(as DDP does). On CUDA the trainer converts batch norm to ``torch.nn.SyncBatchNorm``, whose
training-mode statistics are computed over the global batch, so a BN model trains as one
process would. ``SyncBatchNorm`` needs a GPU; on the CPU the ranks keep slice statistics and
rank 0's running statistics are copied to every rank after each step
(:meth:`Distributed.sync_buffers`, DDP's ``broadcast_buffers``), so they stay replicas.
``smallcnn`` has no batch norm.

Rank 0 alone writes the run directory (config.json, metrics.jsonl, checkpoints, the final
export), shows progress bars and prints; it also runs the per-epoch monitor and probes while
the other ranks wait for its record (:meth:`Distributed.broadcast_object`). Every rank's
random state goes into the checkpoint (:meth:`Distributed.rng_states`), so a resumed run with
the same number of processes continues exactly.

A single process (no torchrun, or ``WORLD_SIZE=1``) gets :data:`SINGLE`, whose every method is
a no-op that returns its input: the one-process path does not change.

Example::

    dist, device = setup(torch.device("cuda"))     # cuda:LOCAL_RANK under torchrun
    x, y = slice_of(x_global, dist), slice_of(y_global, dist)
    loss.backward(); dist.average_gradients(params, len(y)); optimizer.step()
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from featgap.errors import FeatgapError

TEST_DUMP_ENV = "FEATGAP_TEST_DUMP_DIR"
"""Test-only: when set, every rank writes ``rank{r}.json`` (a hash of its weights) there at the end of ``fit``."""


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a torchrun job: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """True when there is more than one process (every collective below is skipped otherwise)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def describe(self) -> dict:
        """What config.json records of a multi-process run."""
        return {"world_size": self.world_size, "backend": self.backend}

    # ---------------------------------------------------------------- the step
    def average_gradients(self, params: Iterable[torch.Tensor], n_local: int) -> None:
        """Replace each ``p.grad`` by the gradient of the mean loss over the *global* batch.

        Each rank scales its gradients by its slice size ``n_local``, appends ``n_local``, and
        one all-reduce sums the flat buffer; dividing by the summed count gives
        ``Σ_r n_r g_r / Σ_r n_r``. Parameters whose ``grad`` is ``None`` are skipped, so the set
        with gradients must be the same on every rank (it is for a fixed architecture).
        """
        if not self.enabled:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1).float() for g in grads] +
                         [torch.tensor([1.0], device=grads[0].device)]).mul_(float(n_local))
        dist.all_reduce(flat)
        flat = flat[:-1].div_(flat[-1])
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def sync_buffers(self, modules: list[nn.Module]) -> None:
        """Copy rank 0's buffers of ``modules`` (plain batch norm on the CPU) to every rank."""
        if not self.enabled or not modules:
            return
        import torch.distributed as dist

        for module in modules:
            for buf in module.buffers():
                dist.broadcast(buf, src=0)

    def sum_over_ranks(self, sums: dict[str, float], seen: int) -> tuple[dict[str, float], int]:
        """The epoch's per-sample metric sums and image count, added up over all ranks."""
        if not self.enabled:
            return sums, seen
        import torch.distributed as dist

        keys = list(sums)
        t = torch.tensor([float(seen)] + [float(sums[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        values = t.tolist()
        return dict(zip(keys, values[1:])), int(round(values[0]))

    # ---------------------------------------------------------------- agreement
    def broadcast_module(self, module: nn.Module) -> None:
        """Make every rank's parameters and buffers rank 0's (DDP does this once at the start)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's ``obj`` (any picklable value) on every rank; the others wait for it."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank reaches this line (e.g. until rank 0 has written a file)."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    # ---------------------------------------------------------------- randomness
    def seed_rank(self, seed: int) -> None:
        """Give this rank its own global random stream (:func:`rank_seed`); nothing for one process."""
        if self.enabled:
            torch.manual_seed(rank_seed(seed, self.rank))

    def rng_states(self) -> dict[str, torch.Tensor]:
        """Every rank's torch random state, for rank 0's checkpoint: ``rng.cpu.{r}`` (and
        ``rng.cuda.{r}``) for ranks ``r ≥ 1``. Rank 0's is the checkpoint's usual ``rng.cpu``.
        A collective: every rank must call it."""
        if not self.enabled:
            return {}
        import torch.distributed as dist

        cuda = self.device.type == "cuda"
        mine = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None)
        states: list = [None] * self.world_size
        dist.all_gather_object(states, mine)
        out: dict[str, torch.Tensor] = {}
        for r, (cpu, gpu) in enumerate(states):
            if r == 0:
                continue
            out[f"rng.cpu.{r}"] = cpu
            if gpu is not None:
                out[f"rng.cuda.{r}"] = gpu
        return out

    def restore_rng(self, tensors: dict[str, torch.Tensor], seed: int, epoch: int) -> bool:
        """After a checkpoint's rank-0 state is restored: restore this rank's own (ranks ≥ 1).

        Returns False when the checkpoint has no state for this rank (it was written by fewer
        processes): the rank then starts a fresh stream from ``(seed, rank, epoch)``; the run
        continues correctly, but not number for number as an uninterrupted one would.
        """
        if not self.enabled or self.rank == 0:
            return True
        key = f"rng.cpu.{self.rank}"
        if key not in tensors:
            torch.manual_seed(rank_seed(seed, self.rank) + 7919 * epoch)
            return False
        torch.set_rng_state(tensors[key])
        if self.device.type == "cuda" and f"rng.cuda.{self.rank}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda.{self.rank}"], self.device)
        return True

    # ---------------------------------------------------------------- models
    def prepare_model(self, model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
        """Batch norm for several processes: ``SyncBatchNorm`` on CUDA (statistics over the global
        batch); on the CPU the list of plain batch-norm layers whose buffers :meth:`sync_buffers`
        copies from rank 0 after each step. One process: ``(model, [])`` untouched."""
        if not self.enabled:
            return model, []
        from torch.nn.modules.batchnorm import _BatchNorm

        if self.device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model), []
        return model, [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


SINGLE = Distributed()
"""One process: every method of :class:`Distributed` is a no-op."""

_STATE: dict[str, Distributed] = {}


def rank_seed(seed: int, rank: int) -> int:
    """The global random seed of ``rank``: different per rank, the same for every run with ``seed``."""
    return seed + 1_000_003 * rank


def from_env(environ: dict[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as torchrun sets them; ``(0, 1, 0)`` outside torchrun."""
    env = os.environ if environ is None else environ
    try:
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    except ValueError as err:
        raise FeatgapError(f"torchrun environment is malformed (RANK, WORLD_SIZE, LOCAL_RANK): {err}") from None


def setup(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group (once per process); return where we stand and our device.

    Outside torchrun (or with one process) this is ``(SINGLE, device)`` and nothing happens.
    Under torchrun: a CUDA ``device`` becomes ``cuda:LOCAL_RANK`` and the backend NCCL, a CPU
    one stays and the backend is gloo; progress bars are switched off on ranks other than 0;
    the group is destroyed when the process exits.
    """
    rank, world, local = from_env()
    if world <= 1:
        return SINGLE, device
    if "group" in _STATE:
        d = _STATE["group"]
        return d, d.device
    import torch.distributed as dist

    if device.type == "cuda":
        if device.index is not None and device.index != local:
            raise FeatgapError(f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; "
                               "pass --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise FeatgapError(f"--device {device}: multi-process training runs on cuda or cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        atexit.register(teardown)
    d = Distributed(rank=rank, world_size=world, local_rank=local, backend=backend, device=device)
    _STATE["group"] = d
    if rank != 0:
        os.environ["FEATGAP_PROGRESS"] = "0"  # one progress bar, rank 0's
    return d, device


def teardown() -> None:
    """Leave the process group (registered with ``atexit`` by :func:`setup`)."""
    _STATE.pop("group", None)
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - the process is exiting; nothing left to clean up
        pass


def is_main_process() -> bool:
    """True unless this is a torchrun rank other than 0 (for prints outside the Trainer)."""
    return from_env()[0] == 0


def slice_of(t: torch.Tensor, d: Distributed) -> torch.Tensor:
    """This rank's contiguous part of a global batch (sizes differ by at most one); ``t`` itself for one process."""
    if not d.enabled:
        return t
    return torch.tensor_split(t, d.world_size)[d.rank]


def dump_for_test(d: Distributed, module: nn.Module) -> None:
    """Test-only (:data:`TEST_DUMP_ENV`): write ``rank{r}.json`` with a SHA-256 of ``module``'s weights."""
    folder = os.environ.get(TEST_DUMP_ENV)
    if not folder:
        return
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"rank{d.rank}.json").write_text(json.dumps({"rank": d.rank, "world_size": d.world_size,
                                                                  "sha256": h.hexdigest()}))


__all__ = ["Distributed", "SINGLE", "TEST_DUMP_ENV", "dump_for_test", "from_env", "is_main_process", "rank_seed",
           "setup", "slice_of", "teardown"]
