"""A probe and an evaluation run in bounded memory: streamed in batches (issue 17, "Load and memory").

``benchmarks/bench_memory.py`` measures peak RSS of :func:`featgap.probes.gap_table` and of
:func:`featgap.evaluate.evaluate` (``autoattack=False``) over 1,000 and 10,000 CIFAR-shaped inputs
in fresh processes; this test runs the same measurement on 500 and 4,000 inputs and bounds the
growth. Between the two sizes the peak may rise by what a run must hold for every input — the
float images and their adversarial examples (probe: the examples; evaluate: the float copy of
the uint8 set and one set of examples, for the feature gap) — plus the output, plus a margin of
half an input copy and 20 MB for the allocator. Activations of all inputs at once (smallcnn's
are twice the input's size per attack), or the examples of every attack kept, or a list of
batches concatenated next to its result, break the bound (before the fix: evaluate grew by
~8 input copies, the probe by 3).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_memory.py"
MB = 1024 * 1024
COPIES = {"probe": 1, "evaluate": 2}
"""Input-sized float tensors a case may hold for every input (beyond the input tensor itself)."""


def _bench():
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("case", ["probe", "evaluate"])
def test_peak_memory_grows_with_the_inputs_not_the_activations(case):
    bench = _bench()
    small, large = (bench.measure(case, n, steps=2, batch_size=250) for n in (500, 4000))
    float_bytes = (large["n"] - small["n"]) * 3 * 32 * 32 * 4
    allowed = (COPIES[case] + 0.5) * float_bytes + (large["output_bytes"] - small["output_bytes"]) + 20 * MB
    grew = (large["peak_rss_mb"] - small["peak_rss_mb"]) * MB
    assert grew <= allowed, (f"{case}: peak RSS grew by {grew / MB:.0f} MB from 500 to 4,000 inputs; at most "
                             f"{allowed / MB:.0f} MB allowed (float inputs {float_bytes / MB:.0f} MB): {small} {large}")
