"""Data-parallel training under torchrun (featgap.train.distributed), on 2 CPU processes with gloo.

The end-to-end tests launch ``torchrun --nproc_per_node 2 --standalone -m featgap train`` (as
``python -m torch.distributed.run``, the same program) on the 8×8 ``digits``, and check what
README's "Multi-GPU / multi-node" section promises: both ranks hold the same weights, rank 0
alone writes a complete run directory (each epoch once in metrics.jsonl), a killed run resumes,
and a run without randomness in its step equals a one-process run with the same global batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from featgap import runs
from featgap.train import TrainConfig, Trainer
from featgap.train.distributed import SINGLE, TEST_DUMP_ENV, Distributed, from_env, rank_seed, slice_of

TINY = dict(dataset="digits", model="smallcnn", epochs=2, batch_size=64, monitor_n=40, attack_steps=2, device="cpu")
"""Both ranks and the one-process reference train this (22 steps of 2 × 32 digits per epoch)."""


def _flags(config: dict) -> list[str]:
    return [a for k, v in config.items() for a in ("--" + k.replace("_", "-"), str(v))]


def _torchrun(config: dict, out, dump, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 --standalone -m featgap train`` with ``config``; one thread per process."""
    environ = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", FEATGAP_PROGRESS="0", **{TEST_DUMP_ENV: str(dump)}, **env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "featgap", "train", *_flags(config), "--out", str(out)]
    return subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=300)


def _rank_hashes(dump) -> list[str]:
    records = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]
    return [r["sha256"] for r in records]


def _check_run_dir(out, epochs: int) -> None:
    for name in (runs.CONFIG, runs.METRICS, runs.SUMMARY, runs.FINAL, runs.LAST, runs.STATE):
        assert (out / name).exists(), name
    assert [m["epoch"] for m in runs.read_metrics(out)] == list(range(1, epochs + 1))  # each epoch once
    assert runs.read_config(out)["distributed"] == {"world_size": 2, "backend": "gloo"}


needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


@pytest.mark.slow
@needs_gloo
def test_two_processes_resume_and_equal_one_process_with_the_same_global_batch(tmp_path):
    config = dict(TINY, method="standard")  # no randomness in the step: comparable number for number
    out = tmp_path / "ddp"
    killed = _torchrun(config, out, tmp_path / "dump0", FEATGAP_TEST_KILL_AT="step:30")  # in epoch 2 of 2
    assert killed.returncode != 0
    assert json.loads((out / runs.STATE).read_text())["epoch"] == 1
    state = runs.read_tensors(out / runs.LAST)
    assert "rng.cpu.1" in state and not torch.equal(state["rng.cpu"], state["rng.cpu.1"])  # per-rank streams kept
    done = _torchrun(config, out, tmp_path / "dump")  # the same command resumes from epoch 1
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    h0, h1 = _rank_hashes(tmp_path / "dump")
    assert h0 == h1  # the replicas agree bit for bit
    _check_run_dir(out, 2)
    assert done.stdout.count("finished") == 2  # rank 0's two lines (Trainer, cli), not rank 1's

    Trainer(TrainConfig(**config), out=tmp_path / "one").fit()
    ddp, one = runs.read_tensors(out / runs.FINAL), runs.read_tensors(tmp_path / "one" / runs.FINAL)
    assert ddp.keys() == one.keys()
    for k in one:  # measured: at most 6e-7 of the tensor's largest entry after 44 steps
        torch.testing.assert_close(ddp[k], one[k], rtol=1e-5, atol=1e-5 * float(one[k].abs().max()), msg=k)
    for a, b in zip(runs.read_metrics(out), runs.read_metrics(tmp_path / "one")):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)  # the global batch's average
        assert a["train_acc"] == pytest.approx(b["train_acc"], rel=1e-6)
        assert a["monitor_clean_acc"] == b["monitor_clean_acc"]


@pytest.mark.slow
@needs_gloo
def test_pgd_at_ranks_agree(tmp_path):
    """PGD draws a different random start on each rank; the averaged gradients keep the replicas equal."""
    done = _torchrun(dict(TINY, method="pgd_at", eps=0.1, epochs=1), tmp_path / "ddp", tmp_path / "dump")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    h0, h1 = _rank_hashes(tmp_path / "dump")
    assert h0 == h1
    _check_run_dir(tmp_path / "ddp", 1)


def test_one_process_is_a_no_op():
    assert not SINGLE.enabled and SINGLE.is_main
    x = torch.arange(10)
    assert slice_of(x, SINGLE) is x
    sums = {"loss": 3.0}
    assert SINGLE.sum_over_ranks(sums, 5) == (sums, 5)
    assert SINGLE.broadcast_object({"a": 1}) == {"a": 1}
    assert SINGLE.rng_states() == {}
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    SINGLE.average_gradients([p], 7)
    assert torch.equal(p.grad, torch.full((3,), 2.0))


def test_slices_cover_the_global_batch_in_order():
    x = torch.arange(9)
    parts = [slice_of(x, Distributed(rank=r, world_size=3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), x)
    assert [len(p) for p in parts] == [3, 3, 3]
    assert [len(slice_of(torch.arange(5), Distributed(rank=r, world_size=2))) for r in (0, 1)] == [3, 2]


def test_environment_and_seeds():
    assert from_env({}) == (0, 1, 0)
    assert from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (3, 8, 1)
    assert rank_seed(0, 0) == 0 and len({rank_seed(s, r) for s in range(4) for r in range(4)}) == 16
