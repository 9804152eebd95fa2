"""featgap.jobs: a job graph run in order here, or on worker processes side by side."""

from __future__ import annotations

import operator
import os

import pytest

from featgap.errors import FeatgapError
from featgap.jobs import Job, plan_workers, run_jobs


def _fail(message: str) -> None:
    raise FeatgapError(message)


def _threads() -> tuple[int, str]:
    import torch

    return torch.get_num_threads(), os.environ.get("FEATGAP_PROGRESS", "")


def test_in_process_runs_in_order_and_reports_each_job():
    seen = []
    out = run_jobs({"a": Job(pow, (3, 2)), "b": Job(operator.add, (1, 2), after=("a",))},
                   on_done=lambda name, r: seen.append((name, r)))
    assert out == {"a": 9, "b": 3}
    assert seen == [("a", 9), ("b", 3)]


def test_two_workers_give_the_same_results_with_their_thread_share():
    jobs = {f"p{i}": Job(pow, (i, 2)) for i in range(4)}
    jobs["t"] = Job(_threads, after=("p0",))
    out = run_jobs(jobs, workers=2, threads=1)
    assert {k: v for k, v in out.items() if k != "t"} == {f"p{i}": i * i for i in range(4)}
    assert out["t"] == (1, "0")  # one torch thread each, progress bars off in the workers


def test_a_failing_worker_job_raises_its_error_here():
    jobs = {"ok": Job(pow, (2, 2)), "bad": Job(_fail, ("--n must be at least 10",)),
            "later": Job(pow, (2, 3), after=("bad",))}
    with pytest.raises(FeatgapError, match="--n must be at least 10"):
        run_jobs(jobs, workers=2, threads=1)


@pytest.mark.parametrize("jobs, message", [
    ({"a": Job(pow, (1, 1), after=("nope",))}, "unknown jobs"),
    ({"a": Job(pow, (1, 1), after=("b",)), "b": Job(pow, (1, 1), after=("a",))}, "cycle"),
])
def test_bad_graphs_are_refused_before_anything_runs(jobs, message):
    with pytest.raises(ValueError, match=message):
        run_jobs(jobs)


def test_plan_uses_two_workers_on_an_idle_two_core_cpu_only():
    assert plan_workers("cpu", ["a", "b"], cores=2, threads=2) == (2, 1)
    assert plan_workers("cpu", ["a", "b"], cores=8, threads=8) == (2, 4)
    assert plan_workers("cpu", ["a", "b"], cores=2, threads=1) == (1, 1)   # a busy machine: one thread, here
    assert plan_workers("cuda", ["a", "b"], cores=16, threads=16) == (1, 16)
    assert plan_workers("cpu", ["a"], cores=2, threads=2) == (1, 2)
