"""benchmarks/bench_vs_reference.py runs: the CPU comparison's JSON, and the GPU suite's code path (``--smoke``, on the CPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_vs_reference.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_vs_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_comparison_writes_medians_and_ratios(bench, tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert bench.main(["--methods", "standard", "--repeats", "1", "--threads", "1",
                           "--out", str(tmp_path / "cpu.json")]) == 0
    finally:
        torch.set_num_threads(before)
    record = json.loads((tmp_path / "cpu.json").read_text())
    entry = record["results"]["standard"]
    assert entry["featgap"]["images_per_epoch"] == entry["reference"]["images_per_epoch"] == 31 * 128
    for who in ("featgap", "reference"):
        for part in ("whole_s", "epoch_s"):
            assert entry[who][part]["min"] <= entry[who][part]["median"] <= entry[who][part]["max"]
    assert entry["ratio_whole"] > 0 and entry["ratio_epoch"] > 0
    assert record["command"].startswith("python benchmarks/bench_vs_reference.py") and record["environment"]["torch"]


@pytest.mark.slow
def test_gpu_suite_code_path_runs_on_the_cpu(bench, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        assert bench.main(["--gpu-suite", "--smoke", "--device", "cpu", "--threads", "1",
                           "--out", str(tmp_path / "gpu.json")]) == 0
    finally:
        torch.set_num_threads(before)
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    cases = {(r["model"], r["who"], r["method"]) for r in rows}
    assert cases == {(m, "featgap", k) for m in ("preact_resnet18", "wrn34_10")
                     for k in ("pgd_at", "trades", "afd", "afa")} | {(m, "reference", "pgd_at")
                                                                      for m in ("preact_resnet18", "wrn34_10")}
    for r in rows:
        assert r["images_per_s"] > 0 and r["flops_per_step"] > 0 and r["epoch_50k_s"] > 0
        assert r["peak_memory_gib"] is None  # CPU: no CUDA memory figure
    pgd = next(r for r in rows if r["who"] == "featgap" and r["method"] == "pgd_at" and r["model"] == "wrn34_10")
    assert pgd["step_time_vs_featgap_pgd_at"] == 1.0 and pgd["speedup_vs_reference"] > 0
