"""Crash safety of ``featgap train``: killed at any moment it resumes exactly; a failed write, a
non-finite loss and a second writer each stop with one line and keep the last good checkpoint.

Most runs here are ``featgap train`` in a child process forked from this one (``featgap.cli.main``
after ``fork``: the same code as the console script without paying torch's import again), killed
with SIGKILL at named points through the test-only hook ``$FEATGAP_TEST_KILL_AT``
(:func:`featgap.cache.crash_point`). One test kills a real ``python -m featgap train`` subprocess
at a random moment. Every run is single-threaded on the CPU, so "the same" means bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from featgap import cache, cli, runs
from featgap.errors import FeatgapError
from featgap.train import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL (POSIX)")

# pgd_at with EMA: the resume must restore the model, the EMA copy, the optimiser's momentum and the
# RNG that draws PGD's random starts. digits (8×8), half of it carved off for monitoring, keeps a
# run at about a second of training.
ARGS = ["train", "--dataset", "digits", "--model", "smallcnn", "--method", "pgd_at", "--attack-steps", "1",
        "--ema", "0.9", "--epochs", "2", "--batch-size", "128", "--val-fraction", "0.5", "--monitor-n", "20",
        "--device", "cpu"]
EPOCHS, STEPS_PER_EPOCH = 2, 5  # ~719 training digits, batch 128, the last partial batch dropped
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "FEATGAP_PROGRESS": "0"}


def featgap(args: list[str], log: Path, kill_at: str | None = None, timeout: float = 180.0) -> int:
    """Run ``featgap ARGS`` in a forked child (one thread); its stdout and stderr go to ``log``.

    Returns the exit code, or ``-9`` when the child was killed by SIGKILL (``kill_at`` reached).
    """
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        rc = 99
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(fd, "w", buffering=1, closefd=False)  # noqa: SIM115
            os.environ.update(ENV)
            os.environ.pop(cache.KILL_ENV, None)
            if kill_at is not None:
                os.environ[cache.KILL_ENV] = kill_at
            cache._kill_counts.clear()
            torch.set_num_threads(1)
            rc = cli.main(args)
        except BaseException:  # noqa: BLE001 - report anything, then leave
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(rc)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"featgap {' '.join(args)} ran past {timeout} s; log: {log.read_text()}")
        time.sleep(0.02)


def weights(run: Path) -> dict[str, torch.Tensor]:
    """Final weights and the whole training state of a finished run."""
    return {**{f"final/{k}": v for k, v in runs.read_tensors(run / runs.FINAL).items()},
            **{f"last/{k}": v for k, v in runs.read_tensors(run / runs.LAST).items()}}


def records(run: Path) -> list[dict]:
    """metrics.jsonl without the wall times, which differ between any two runs."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs.read_metrics(run)]


def assert_same_run(run: Path, reference: Path) -> None:
    assert (run / runs.SUMMARY).is_file(), "the rerun finished"
    got, want = weights(run), weights(reference)
    assert got.keys() == want.keys()
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, f"not bit-identical to the uninterrupted run: {different[:5]}"
    assert [r["epoch"] for r in runs.read_metrics(run)] == list(range(1, EPOCHS + 1)), "each epoch exactly once"
    assert records(run) == records(reference)
    assert json.loads((run / runs.STATE).read_text()) == {"epoch": EPOCHS, "step": EPOCHS * STEPS_PER_EPOCH}
    leftovers = [p.name for p in run.rglob(".*") if p.is_file()]
    assert not leftovers, f"temporary or lock files left behind: {leftovers}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run with the same seed (this also imports everything once, before forking)."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # imports torch._dynamo once, not per child
    root = tmp_path_factory.mktemp("reference")
    rc = featgap(ARGS + ["--out", str(root / "run")], root / "log")
    assert rc == 0, (root / "log").read_text()
    return root / "run"


KILL_POINTS = {  # point -> when the process dies; the fast ones run by default, all of them with the slow tests
    "write:config.json:1": "while config.json is written: only a temporary file and the lock exist",
    "config:1": "right after config.json, before any training",
    f"step:{STEPS_PER_EPOCH + 2}": "in the middle of epoch 2",
    "callback:2": "in epoch 2's evaluation (the monitoring callback), before its metrics line",
    "metrics:1": "after epoch 1's metrics line, before its checkpoint",
    "write:last.safetensors:2": "while epoch 2's checkpoint is written",
    "write:state.json:1": "after epoch 1's checkpoint, before state.json says so",
    "write:model.safetensors:1": "while the final weights are exported",
    "write:summary.json:1": "after the final export, before summary.json",
}
FAST_POINTS = {f"step:{STEPS_PER_EPOCH + 2}", "metrics:1", "write:last.safetensors:2", "write:summary.json:1"}


@pytest.mark.parametrize("kill_at", [pytest.param(p, marks=() if p in FAST_POINTS else pytest.mark.slow)
                                     for p in KILL_POINTS])
def test_killed_run_resumes_bit_for_bit(reference, tmp_path, kill_at):
    """SIGKILL at ``kill_at``, then the same command again: the run finishes as if never interrupted."""
    out = tmp_path / "run"
    rc = featgap(ARGS + ["--out", str(out)], tmp_path / "killed.log", kill_at=kill_at)
    assert rc == -signal.SIGKILL, f"the kill point {kill_at} was never reached: {(tmp_path / 'killed.log').read_text()}"
    assert not (out / runs.SUMMARY).exists()
    assert (out / runs.LOCK).exists(), "a killed process leaves its lock: stale, taken over below"
    rc = featgap(ARGS + ["--out", str(out)], tmp_path / "rerun.log")
    assert rc == 0, (tmp_path / "rerun.log").read_text()
    assert_same_run(out, reference)


@pytest.mark.slow
def test_killed_twice_in_a_row(reference, tmp_path):
    """Crashes in consecutive attempts (a resumed run killed again) still end in the same run."""
    out = tmp_path / "run"
    for kill_at in ("step:3", "metrics:1", "write:last.safetensors:1", "write:model.safetensors:1"):
        assert featgap(ARGS + ["--out", str(out)], tmp_path / "log", kill_at=kill_at) == -signal.SIGKILL, kill_at
    assert featgap(ARGS + ["--out", str(out)], tmp_path / "log") == 0, (tmp_path / "log").read_text()
    assert_same_run(out, reference)


@pytest.mark.slow
def test_real_subprocess_killed_at_a_random_moment(reference, tmp_path):
    """``python -m featgap train`` killed at a random moment of its training, then rerun the same way."""
    seed = int(time.time())
    delay = random.Random(seed).uniform(0.0, 1.5)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "featgap", *ARGS, "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != cache.KILL_ENV} | ENV
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / runs.CONFIG).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # start the clock when the run directory starts (imports take seconds)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate(timeout=120)
    where = f"(seed {seed}: killed {delay:.2f} s after config.json; exit {proc.returncode})"
    assert proc.returncode in (-signal.SIGKILL, 0), f"{where}: {err.decode()}"
    # finished before the kill landed (summary.json is written last; the kill may still arrive while the
    # process prints its last line or exits, so the exit code alone does not tell)
    finished = (out / runs.SUMMARY).exists()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    if finished:  # the rerun refuses to overwrite a finished run
        assert rerun.returncode == 2 and "finished run" in rerun.stderr, where
        lock = out / runs.LOCK
        if lock.exists():  # killed between writing summary.json and releasing the lock: the dead
            assert json.loads(lock.read_text())["pid"] == proc.pid, where  # process's stale lock, which
            lock.unlink()  # the next writer takes over (test_second_writer_...); nothing else may be left
    else:
        assert rerun.returncode == 0, f"{where}: {rerun.stderr}"
    assert_same_run(out, reference)


# ---------------------------------------------------------------- a failed write
def test_disk_full_while_writing_a_checkpoint(reference, tmp_path, monkeypatch, capsys):
    """ENOSPC in epoch 2's checkpoint: one line, exit 2, epoch 1's checkpoint intact; the rerun resumes exactly."""
    out = tmp_path / "run"
    real_save = runs.save_file
    seen: dict = {"n": 0}

    def save_file(tensors, filename, *a, **kw):
        if Path(filename).name.startswith(".last.safetensors."):
            seen["n"] += 1
            if seen["n"] == 2:  # epoch 2's checkpoint: the disk is full half-way through
                seen["before"] = (out / runs.LAST).read_bytes()
                Path(filename).write_bytes(b"half a file")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real_save(tensors, filename, *a, **kw)

    monkeypatch.setattr(runs, "save_file", save_file)
    # In this process, not a forked child: cli.main sets torch's thread count itself
    # (featgap.threads), so pin it to the reference's one thread, or the sums differ in the last bit.
    monkeypatch.setenv("FEATGAP_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        capsys.readouterr()
        assert cli.main(ARGS + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("featgap: error: cannot write"), err
        assert "No space left on device" in err and "epoch 1" in err and "rerun the same command" in err, err
        assert (out / runs.LAST).read_bytes() == seen["before"], "the last good checkpoint is untouched"
        assert json.loads((out / runs.STATE).read_text())["epoch"] == 1
        runs.load(out, "last")  # and readable
        assert not [p.name for p in out.rglob(".*") if p.is_file()], "no temporary file, no lock left"
        monkeypatch.setattr(runs, "save_file", real_save)
        assert cli.main(ARGS + ["--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert_same_run(out, reference)


# ---------------------------------------------------------------- a non-finite loss
FAST = dict(dataset="digits", model="smallcnn", method="standard", epochs=3, batch_size=128, val_fraction=0.5,
            monitor_n=0, device="cpu")


def nan_at(method, epoch: int, step: int, steps_per_epoch: int = STEPS_PER_EPOCH) -> None:
    """Make ``method.loss`` return NaN at training step ``step`` (1-based) of ``epoch``."""
    real, calls = method.loss, [0]

    def loss(model, x, y, eps):
        calls[0] += 1
        value, metrics = real(model, x, y, eps)
        if calls[0] == (epoch - 1) * steps_per_epoch + step:
            value = value * float("nan")
        return value, metrics

    method.loss = loss


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(TrainConfig(**FAST), out=out)
    nan_at(trainer.method, epoch=2, step=3)
    with pytest.raises(FeatgapError, match=rf"non-finite loss \(nan\) at epoch 2, step 3 of {STEPS_PER_EPOCH}") as err:
        trainer.fit()
    assert "\n" not in str(err.value) and "last good checkpoint (epoch 1" in str(err.value)
    assert json.loads((out / runs.STATE).read_text())["epoch"] == 1
    assert [r["epoch"] for r in runs.read_metrics(out)] == [1]
    assert not (out / runs.SUMMARY).exists() and not (out / runs.LOCK).exists()
    assert all(torch.isfinite(v).all() for v in runs.read_tensors(out / runs.LAST).values() if v.is_floating_point())


@pytest.mark.filterwarnings("ignore:Error detected in")  # anomaly mode's traceback of the forward call
@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")  # and its "slow" notice, for users
def test_detect_anomaly_flag(tmp_path):
    """``--detect-anomaly`` reaches the config, runs the fit in anomaly mode and does not block a resume."""
    args = cli.build_parser(["train"]).parse_args(["train", "--out", "x", "--detect-anomaly"])
    assert cli.train_config_from_args(args).detect_anomaly is True
    args = cli.build_parser(["train"]).parse_args(["train", "--out", "x"])
    assert cli.train_config_from_args(args).detect_anomaly is False
    seen = []
    trainer = Trainer(TrainConfig(**{**FAST, "epochs": 1}, detect_anomaly=True), out=tmp_path / "run",
                      callbacks=[lambda model, epoch: seen.append(torch.is_anomaly_enabled()) or {}])
    nan_at(trainer.method, epoch=1, step=2)
    with pytest.raises(RuntimeError, match="nan"):  # anomaly mode names the backward function
        trainer.fit()
    assert not torch.is_anomaly_enabled() and not (tmp_path / "run" / runs.LOCK).exists()
    Trainer(TrainConfig(**{**FAST, "epochs": 1}, detect_anomaly=True), out=tmp_path / "run2",
            callbacks=[lambda model, epoch: seen.append(torch.is_anomaly_enabled()) or {}]).fit()
    assert seen == [True]
    # a run started without the flag resumes with it (it changes nothing that is computed)
    runs.write_json(tmp_path / "run3" / runs.CONFIG,
                    {"config": TrainConfig(**{**FAST, "epochs": 1}).resolved().as_dict()})
    Trainer(TrainConfig(**{**FAST, "epochs": 1}, detect_anomaly=True), out=tmp_path / "run3")


# ---------------------------------------------------------------- one writer per run directory
HOLDER = """
import sys
from featgap import runs
runs.RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def test_second_writer_is_refused_and_a_stale_lock_taken_over(reference, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=os.environ | ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        owner = json.loads((out / runs.LOCK).read_text())
        assert owner["pid"] == holder.pid and owner["host"] == socket.gethostname()
        rc = featgap(ARGS + ["--out", str(out)], tmp_path / "log")
        err = (tmp_path / "log").read_text()
        assert rc == 2, err
        assert err.strip().splitlines() == [err.strip()] and err.startswith("featgap: error: ")
        assert f"being written by featgap process {holder.pid} on {socket.gethostname()}" in err
        assert not (out / runs.CONFIG).exists(), "the refused process wrote nothing"
        holder.kill()  # dies without releasing: its lock is now stale
        holder.wait()
    finally:
        holder.kill()
        holder.communicate()
    assert (out / runs.LOCK).exists()
    assert featgap(ARGS + ["--out", str(out)], tmp_path / "log") == 0, (tmp_path / "log").read_text()
    assert_same_run(out, reference)


def test_run_lock(tmp_path):
    out = tmp_path / "run"
    with runs.RunLock(out) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(FeatgapError, match=f"being written by featgap process {os.getpid()}"):
            runs.RunLock(out).acquire()
    assert not out.exists(), "released, and the folder it created (still empty) removed"
    # a lock of a process that is gone is stale; one of another host cannot be checked and is respected
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out.mkdir()
    (out / runs.LOCK).write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname()}))
    with runs.RunLock(out):
        assert json.loads((out / runs.LOCK).read_text())["pid"] == os.getpid()
    assert not (out / runs.LOCK).exists() and out.is_dir()
    (out / runs.LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(FeatgapError, match="process 1 on elsewhere.example"):
        runs.RunLock(out).acquire()
    # an empty lock file is one being written: respected while fresh, stale after 10 s
    (out / runs.LOCK).write_text("")
    with pytest.raises(FeatgapError, match="being created"):
        runs.RunLock(out).acquire()
    os.utime(out / runs.LOCK, (time.time() - 60, time.time() - 60))
    runs.RunLock(out).acquire().release()
