"""How many CPU threads torch uses, chosen on purpose: ``--threads``, ``FEATGAP_THREADS``, or measured.

On a shared machine, torch's default (one thread per core) oversubscribes the cores that other
processes already use: a PGD-AT epoch of smallcnn on a busy 2-core machine took 8–10× longer
with 2 threads than with 1 (141 s vs 17 s; 264 s vs 27 s with one more busy process; README's
"Speed" section, ``benchmarks/bench_threads.py``; issue 16 saw 4× with one other job). A thread
too few costs at most the second core's share on an idle machine; a thread too many costs
several times the whole epoch on a busy one. So the default takes the cores this process may use and subtracts the ones busy with
other work right now::

    threads = max(1, cores − others)

where ``cores`` is ``len(os.sched_getaffinity(0))`` (capped by a cgroup CPU quota, as in a
container started with ``--cpus``) and ``others`` the number of runnable tasks other than this
one, read from ``/proc/loadavg`` a few times over ~40 ms (the median; where there is no
``/proc``, the 1-minute load average).

Where the setting comes from, first match wins:

1. ``--threads N`` of ``featgap train`` / ``eval`` / ``probe`` / ``demo`` (or ``apply(N)``);
2. the ``FEATGAP_THREADS`` environment variable (a number, or ``auto``);
3. ``OMP_NUM_THREADS`` set by the user: torch already follows it, featgap leaves it alone;
4. the measured default above.

>>> from featgap import threads
>>> threads.apply()          # what featgap's commands do first
{'threads': 1, 'source': 'auto', 'cores': 2, 'others_running': 1.0, ...}
>>> threads.record()         # what a run's config.json stores under environment.threads

This module imports torch only inside :func:`apply` and :func:`record` (``import featgap``
stays torch-free).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any

from featgap.errors import FeatgapError

ENV = "FEATGAP_THREADS"
"""The environment variable that sets the thread count (a positive integer, or ``auto``)."""

_applied: dict[str, Any] | None = None  # what apply() chose last in this process


def cores() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup v2/v1 CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    """CPUs granted by the cgroup's quota (``cpu.max`` or ``cpu.cfs_quota_us``), ``None`` when unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
            quota_us = int(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
            period_us = int(fh.read())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def others_running(samples: int = 5, interval: float = 0.01) -> float:
    """Runnable tasks other than this one, now: the median of ``samples`` reads of ``/proc/loadavg``
    (its ``running/total`` field counts this process's thread too, hence − 1); without ``/proc``,
    the 1-minute load average; 0 when neither exists."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as fh:
                counts.append(int(fh.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(interval)
    if counts:
        return float(max(0.0, statistics.median(counts)))
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return 0.0


def auto_threads(n_cores: int | None = None, others: float | None = None) -> int:
    """The measured default: ``max(1, cores − others)``, others rounded to the nearest whole task."""
    n_cores = cores() if n_cores is None else n_cores
    others = others_running() if others is None else others
    return max(1, min(n_cores, n_cores - int(math.floor(others + 0.5))))


def parse(value: str | int | None, flag: str = "--threads") -> int | None:
    """A thread count as given (``"3"``, ``3``, ``"auto"``/``None`` → ``None``); else a one-line error."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise FeatgapError(f"{flag} must be a positive integer or 'auto'; got {value!r}") from None
    if n < 1:
        raise FeatgapError(f"{flag} must be a positive integer or 'auto'; got {value!r}")
    return n


def choose(requested: str | int | None = None) -> dict[str, Any]:
    """Decide the thread count without setting it: ``{"threads": n or None, "source": …, …}``.

    ``threads`` is ``None`` only when ``OMP_NUM_THREADS`` decides (torch reads it itself).
    """
    n_cores = cores()
    info: dict[str, Any] = {"cores": n_cores}
    n = parse(requested)
    if n is not None:
        return {"threads": n, "source": "--threads", **info}
    env = os.environ.get(ENV)
    if env is not None:
        n = parse(env, ENV)
        if n is not None:
            return {"threads": n, "source": ENV, **info}
    elif requested is None and os.environ.get("OMP_NUM_THREADS"):
        return {"threads": None, "source": "OMP_NUM_THREADS", **info}
    others = others_running()
    return {"threads": auto_threads(n_cores, others), "source": "auto", "others_running": others, **info}


def apply(requested: str | int | None = None) -> dict[str, Any]:
    """Choose (:func:`choose`) and set torch's intra-op thread count; returns the choice, also kept for :func:`record`."""
    global _applied
    import torch

    choice = choose(requested)
    if choice["threads"] is not None and choice["threads"] != torch.get_num_threads():
        torch.set_num_threads(choice["threads"])
    choice["threads"] = torch.get_num_threads()
    _applied = choice
    return dict(choice)


def record() -> dict[str, Any]:
    """The setting in force, for a run's ``config.json``: torch's thread count and where it came from.

    ``source`` is what :func:`apply` used (``--threads``, ``FEATGAP_THREADS``, ``OMP_NUM_THREADS``,
    ``auto``), or ``"not set by featgap"`` when nothing called it (a Python session: torch's own
    default, or the caller's ``torch.set_num_threads``).
    """
    import torch

    out: dict[str, Any] = {"threads": torch.get_num_threads(), "source": "not set by featgap", "cores": cores()}
    if _applied is not None:
        out.update({k: v for k, v in _applied.items() if k != "threads"})
        if _applied["threads"] != out["threads"]:
            out["source"] = f"changed after featgap set it ({_applied['source']})"
    for var in ("OMP_NUM_THREADS", ENV):
        if os.environ.get(var) is not None:
            out[var] = os.environ[var]
    return out
