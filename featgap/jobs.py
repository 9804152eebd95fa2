"""Run a small graph of independent jobs in worker processes: the CPU's cores used side by side.

Why: on a laptop CPU much of featgap's work is made of many *small* operations (AutoAttack's
FAB-T runs 900 forward/backward passes per robust image, Square 5,000 forward passes on a few
dozen digits). Such work is bound by per-operation overhead, not arithmetic, so a second torch
thread inside one process barely helps, while a second *process* doing other work on the
other core doubles what gets done. ``featgap demo`` trains, evaluates and probes three models
(five with ``--runs``); this module runs those jobs two at a time, each process with its share
of the threads.

A job is a picklable top-level function with its arguments and the names of the jobs whose
results it needs first; :func:`run_jobs` starts every job whose dependencies are done, in
the order given, on ``workers`` processes::

    jobs = {"train:a": Job(train, ("a",)), "eval:a": Job(evaluate, ("a",), after=("train:a",))}
    results = run_jobs(jobs, workers=2, threads=1)     # {"train:a": ..., "eval:a": ...}

What a job prints is printed here when it finishes (so it reaches a notebook too).
``workers=1`` runs the jobs one after the other in this process (what a GPU or a one-core
machine gets: nothing is spawned). A job that raises stops the pool: jobs not started are
cancelled and the error is raised here, unchanged (a :class:`~featgap.errors.FeatgapError`
stays one line).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from featgap.progress import progress


@dataclass(frozen=True)
class Job:
    """``fn(*args)``, run once every job named in ``after`` has finished."""

    fn: Callable[..., Any]
    args: tuple = ()
    after: tuple[str, ...] = field(default_factory=tuple)


def _start_worker(threads: int, env: dict[str, str]) -> None:
    """Worker initialiser: its thread count and environment (progress bars off: the parent shows one)."""
    os.environ.update(env)
    import torch

    torch.set_num_threads(threads)


def _captured(fn: Callable[..., Any], args: tuple) -> tuple[Any, str]:
    """Run ``fn(*args)`` in a worker and return what it printed too, for the parent to print: a
    worker's own stdout is not the notebook's (a Jupyter kernel would lose the lines)."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = fn(*args)
    return result, buffer.getvalue()


def _check(jobs: dict[str, Job]) -> None:
    for name, job in jobs.items():
        unknown = [d for d in job.after if d not in jobs]
        if unknown:
            raise ValueError(f"job {name!r} waits for unknown jobs {unknown}")
    done: set[str] = set()
    while len(done) < len(jobs):  # a cycle would leave jobs that can never start
        ready = [n for n, j in jobs.items() if n not in done and all(d in done for d in j.after)]
        if not ready:
            raise ValueError(f"jobs wait for each other in a cycle: {sorted(set(jobs) - done)}")
        done.update(ready)


def run_jobs(jobs: dict[str, Job], workers: int = 1, threads: int = 1, desc: str = "jobs",
             on_done: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
    """Run ``jobs`` (name → :class:`Job`) on ``workers`` processes of ``threads`` torch threads each.

    Args:
        jobs: the jobs, in the order to prefer when several are ready (put the longest first).
        workers: processes to run side by side; ``1`` runs everything here, in order.
        threads: torch threads per worker process (ignored when ``workers == 1``).
        desc: label of the progress bar (one step per finished job).
        on_done: called in this process as ``on_done(name, result)`` when a job finishes,
            e.g. to print one line per job.

    Returns:
        ``{name: result}`` for every job.

    >>> run_jobs({"sq": Job(pow, (3, 2))})
    {'sq': 9}
    """
    _check(jobs)
    results: dict[str, Any] = {}
    bar = progress(range(len(jobs)), desc=desc)
    if workers <= 1:
        waiting = dict(jobs)
        while waiting:  # the first listed job whose dependencies are done (_check: there always is one)
            name = next(n for n, j in waiting.items() if all(d in results for d in j.after))
            job = waiting.pop(name)
            results[name] = job.fn(*job.args)
            bar.update(1)
            if on_done is not None:
                on_done(name, results[name])
        bar.close()
        return results
    import multiprocessing

    env = {"FEATGAP_PROGRESS": "0", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    running: dict[Future, str] = {}
    waiting = dict(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(threads, env)) as pool:
        try:
            while waiting or running:
                for name in [n for n, j in waiting.items() if all(d in results for d in j.after)]:
                    if len(running) >= workers:
                        break
                    job = waiting.pop(name)
                    running[pool.submit(_captured, job.fn, job.args)] = name
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    results[name], printed = future.result()  # re-raises the worker's exception here
                    if printed:
                        print(printed, end="", flush=True)
                    bar.update(1)
                    if on_done is not None:
                        on_done(name, results[name])
        except BaseException:
            for future in running:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
    return results


def plan_workers(device: str, jobs: Sequence[str], cores: int, threads: int) -> tuple[int, int]:
    """``(workers, threads_per_worker)`` for ``jobs`` on ``device`` given ``threads`` usable CPU threads.

    On CPU with at least two usable threads: ``min(threads, len(jobs), 2)`` workers sharing the
    threads (measured on 2 cores: README "Speed"); anything else (a GPU, one usable thread) runs
    in this process with all ``threads``. ``cores`` caps the total.

    >>> plan_workers("cpu", ["a", "b", "c"], cores=2, threads=2)
    (2, 1)
    >>> plan_workers("cuda", ["a", "b"], cores=16, threads=16)
    (1, 16)
    """
    usable = max(1, min(cores, threads))
    if device != "cpu" or usable < 2 or len(jobs) < 2:
        return 1, usable
    workers = min(usable, len(jobs), 2)
    return workers, max(1, usable // workers)
