"""featgap against a plain research-script loop: same model, data, method and steps, one process.

    python benchmarks/bench_vs_reference.py                          # CPU: smallcnn on mnist5k, 2 threads
    python benchmarks/bench_vs_reference.py --device cuda --gpu-suite  # GPU: PreAct RN-18 and WRN-34-10
    python benchmarks/bench_vs_reference.py --gpu-suite --smoke      # the GPU suite's code path, tiny, on CPU

**CPU** (default). Two ways of training smallcnn for one epoch on mnist5k's 4,000 training
digits (31 batches of 128, the last partial batch dropped by both), PGD-10 AT (L∞ ε = 0.3,
step 2.5·ε/10, random start) and standard training, SGD (lr 0.1, momentum 0.9, weight decay
5e-4):

(a) featgap: ``featgap train --method M --epochs 1 --monitor-n 0`` called in this process
    (``featgap.cli.main``): its whole set-up (arguments, the dataset read from its disk cache,
    the model, the run directory, the checkpoint) and the epoch; and, separately, the epoch
    alone (``seconds`` of the epoch's ``metrics.jsonl`` record: the training steps only).
(b) the reference: a loop written the way most robustness repositories write it — a
    torchvision-style ``DataLoader`` over a ``TensorDataset`` of float images, fp32, NCHW,
    ``.item()`` every step, PGD with ``torch.autograd.grad`` per step, the same smallcnn
    (``featgap.models``), the same PGD-10 settings and optimiser; its set-up (data to a float
    tensor, the model, the optimiser) and its epoch, timed the same two ways.

One untimed round of each runs first (one-off costs: the first optimiser imports
``torch._dynamo``; both ways share them in one process). Then ``--repeats`` rounds,
interleaved (a, b, b, a, a, b, ...), so a change in the machine's load hits both; the median,
min and max of each figure, the ratio of medians (b)/(a) (above 1: featgap is faster) and
images/s are printed and written to ``benchmarks/results/vs_reference_cpu.json``.
``--fresh-repeats N`` also times both as fresh processes (``python -m featgap train`` and this
script's ``--reference-only``), imports included, interleaved.

**GPU** (``--gpu-suite``, meant for ``--device cuda``). PreAct ResNet-18 and WRN-34-10 on
synthetic 32×32×3 tensors (speed does not depend on pixel values), batch 128 and 512; the
training step of featgap's PGD-10 AT, TRADES, AFD and AFA as :class:`featgap.train.Trainer`
runs it (bf16 autocast and channels-last on CUDA, the method's loss, SGD), and the reference
loop's PGD-10 AT step (fp32, NCHW, ``.item()``). For each: images/s, the implied seconds per
50,000-image epoch, peak memory, FLOPs per step (``torch.utils.flop_counter``'s formulas) and the achieved
TFLOP/s against the device's dense bf16 peak. Written to
``benchmarks/results/vs_reference_gpu.json``. ``--smoke`` runs the same code on 8×8 images,
batch 2, one timed step, on whatever ``--device`` says (a check that the suite runs, not a
figure; written to a temporary file unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
EPS, STEPS = 0.3, 10
ALPHA = 2.5 * EPS / STEPS
BATCH, LR, MOMENTUM, WD = 128, 0.1, 0.9, 5e-4

BF16_PEAK_TFLOPS = {  # dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets
    "H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.5,
    "H100": 756.5, "A100": 312.0, "L40S": 362.05, "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.2,
}


# ------------------------------------------------------------------------------------------ helpers
def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": [round(v, 4) for v in values]}


def environment(device: str) -> dict:
    import numpy
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
           "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=Path(__file__).resolve().parent, check=False).stdout.strip() or None
    except OSError:
        env["git_commit"] = None
    return env


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


# ------------------------------------------------------------------------------------------ the reference loop
def reference_setup(device: str, seed: int = 0):
    """The research script's set-up: data as one float TensorDataset, a DataLoader, smallcnn, SGD."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from featgap import data, models

    torch.manual_seed(seed)
    train = data.load("mnist5k", "train")
    x = train.images.float() / 255.0  # (4000, 1, 28, 28) in [0, 1]
    loader = DataLoader(TensorDataset(x, train.labels), batch_size=BATCH, shuffle=True, drop_last=True)
    info = data.info("mnist5k")
    model = models.create("smallcnn", 10, 1, info.mean, info.std).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    return loader, model, opt


def reference_pgd(model, x, y, eps: float = EPS, alpha: float = ALPHA, steps: int = STEPS):
    """PGD-L∞ as most repositories write it: random start, autograd.grad per step, sign step, clip."""
    import torch
    import torch.nn.functional as F

    model.eval()
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1).detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss, [x_adv])[0]
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1).detach()
    model.train()
    return x_adv


def reference_epoch(loader, model, opt, method: str, device: str) -> tuple[int, float, float]:
    """One epoch of the research loop; (images, mean loss, accuracy) read with ``.item()`` every step."""
    import torch.nn.functional as F

    model.train()
    seen, total_loss, correct = 0, 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        inputs = reference_pgd(model, x, y) if method == "pgd_at" else x
        logits = model(inputs)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return seen, total_loss / seen, correct / seen


# ------------------------------------------------------------------------------------------ CPU comparison
def forget_data() -> None:
    """Drop the in-memory copy of mnist5k, so each round reads it as a fresh process would (disk cache)."""
    from featgap.data import embedded

    embedded._mnist5k_arrays.cache_clear()


def featgap_round(method: str, threads: int, device: str, work: Path) -> dict:
    from featgap import cli, runs

    forget_data()
    out = work / f"featgap-{method}"
    shutil.rmtree(out, ignore_errors=True)
    argv = ["train", "--method", method, "--epochs", "1", "--monitor-n", "0", "--device", device,
            "--out", str(out), "--threads", str(threads)]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(argv)
    whole = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"featgap train failed ({rc}): {' '.join(argv)}")
    record = runs.read_metrics(out)[-1]
    return {"whole_s": whole, "epoch_s": record["seconds"], "images": record["step"] * BATCH,
            "loss": record.get("train_loss")}


def reference_round(method: str, device: str) -> dict:
    forget_data()
    start = time.perf_counter()
    loader, model, opt = reference_setup(device)
    epoch_start = time.perf_counter()
    images, loss, _ = reference_epoch(loader, model, opt, method, device)
    end = time.perf_counter()
    return {"whole_s": end - start, "epoch_s": end - epoch_start, "images": images, "loss": loss}


def fresh_round(which: str, method: str, threads: int, device: str, work: Path) -> float:
    env = {**os.environ, "FEATGAP_PROGRESS": "0", "OMP_NUM_THREADS": str(threads)}
    if which == "featgap":
        out = work / f"fresh-{method}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "featgap", "train", "--method", method, "--epochs", "1", "--monitor-n", "0",
               "--device", device, "--out", str(out), "--threads", str(threads)]
    else:
        cmd = [sys.executable, __file__, "--reference-only", "--method", method, "--device", device,
               "--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cpu_comparison(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="featgap-bench-"))
    results: dict = {}
    try:
        for method in args.methods:
            print(f"\n{method}: warm-up round (untimed)", flush=True)
            featgap_round(method, args.threads, args.device, work)
            reference_round(method, args.device)
            rounds: dict[str, list[dict]] = {"featgap": [], "reference": []}
            for r in range(args.repeats):
                order = ("featgap", "reference") if r % 2 == 0 else ("reference", "featgap")
                for which in order:
                    res = (featgap_round(method, args.threads, args.device, work) if which == "featgap"
                           else reference_round(method, args.device))
                    rounds[which].append(res)
                print(f"  round {r + 1}/{args.repeats}: featgap whole {rounds['featgap'][-1]['whole_s']:.2f} s "
                      f"(epoch {rounds['featgap'][-1]['epoch_s']:.2f}), reference whole "
                      f"{rounds['reference'][-1]['whole_s']:.2f} s (epoch {rounds['reference'][-1]['epoch_s']:.2f})",
                      flush=True)
            entry: dict = {}
            for which, res in rounds.items():
                images = res[0]["images"]
                entry[which] = {"images_per_epoch": images,
                                "whole_s": summary([x["whole_s"] for x in res]),
                                "epoch_s": summary([x["epoch_s"] for x in res]),
                                "images_per_s_epoch": images / statistics.median(x["epoch_s"] for x in res),
                                "images_per_s_whole": images / statistics.median(x["whole_s"] for x in res)}
            for part in ("whole_s", "epoch_s"):
                entry[f"ratio_{part[:-2]}"] = entry["reference"][part]["median"] / entry["featgap"][part]["median"]
            if args.fresh_repeats:
                fresh: dict[str, list[float]] = {"featgap": [], "reference": []}
                for r in range(args.fresh_repeats):
                    order = ("featgap", "reference") if r % 2 == 0 else ("reference", "featgap")
                    for which in order:
                        fresh[which].append(fresh_round(which, method, args.threads, args.device, work))
                entry["fresh_process_s"] = {k: summary(v) for k, v in fresh.items()}
                entry["ratio_fresh_process"] = (entry["fresh_process_s"]["reference"]["median"]
                                                / entry["fresh_process_s"]["featgap"]["median"])
            results[method] = entry
            print_cpu(method, entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def print_cpu(method: str, e: dict) -> None:
    f, r = e["featgap"], e["reference"]
    print(f"{method}: {f['images_per_epoch']} images per epoch, {len(f['whole_s']['values'])} interleaved rounds")
    for label, part in (("whole (set-up + epoch)", "whole_s"), ("epoch alone", "epoch_s")):
        print(f"  {label:24} featgap {f[part]['median']:.3f} s [{f[part]['min']:.3f}, {f[part]['max']:.3f}]"
              f"  reference {r[part]['median']:.3f} s [{r[part]['min']:.3f}, {r[part]['max']:.3f}]"
              f"  ratio (b)/(a) {e['ratio_' + part[:-2]]:.2f}×")
    print(f"  images/s over the epoch: featgap {f['images_per_s_epoch']:.0f}, reference {r['images_per_s_epoch']:.0f}")
    if "fresh_process_s" in e:
        fp = e["fresh_process_s"]
        print(f"  fresh process (imports included): featgap {fp['featgap']['median']:.2f} s, reference "
              f"{fp['reference']['median']:.2f} s, ratio {e['ratio_fresh_process']:.2f}×")


# ------------------------------------------------------------------------------------------ GPU suite
def bf16_peak(name: str) -> float | None:
    for key, peak in BF16_PEAK_TFLOPS.items():  # the table lists specific names before generic ones
        if key in name:
            return peak
    return None


def make_model(name: str, device):
    from featgap import models

    return models.create(name, 10, 3, mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616)).to(device)


def featgap_step_fn(method_name: str, model_name: str, batch: int, size: int, device) -> tuple[Callable[[], None], object]:
    """One training step as ``Trainer.fit`` runs it (autocast + channels-last on CUDA, metrics read per step)."""
    import torch

    from featgap import methods
    from featgap.methods import AttackSettings

    torch.manual_seed(0)
    cuda = device.type == "cuda"
    method = methods.get(method_name)(AttackSettings(steps=STEPS, step_size=2 / 255))
    model = method.start(make_model(model_name, device)).to(device)
    method.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(method.param_groups(model), lr=0.1, momentum=MOMENTUM, weight_decay=WD)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda)
    model.train()

    def step() -> None:
        with autocast:
            loss, metrics = method.loss(model, x, y, 8 / 255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for v in (loss.detach(), *metrics.values()):
            float(v)  # what Trainer.fit does with each metric every step

    return step, model


def reference_step_fn(model_name: str, batch: int, size: int, device) -> tuple[Callable[[], None], object]:
    """The research loop's PGD-10 AT step: fp32, NCHW, autograd.grad per PGD step, ``.item()``."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = make_model(model_name, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=MOMENTUM, weight_decay=WD)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        x_adv = reference_pgd(model, x, y, eps=8 / 255, alpha=2 / 255)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        (logits.argmax(1) == y).sum().item()

    return step, model


def count_flops(step: Callable[[], None]) -> float:
    """FLOPs of one call of ``step``: every op ``torch.utils.flop_counter`` has a formula for (matmuls,
    convolutions, their backward passes), counted at dispatch. ``FlopCounterMode`` itself is not
    used: its per-module attribution fails under ``torch.autograd.grad`` with respect to an input
    (what PGD does)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Count.total += formula(*args, **kwargs, out_val=out)
            return out

    with Count():
        step()
    return float(Count.total)


def time_step(step: Callable[[], None], device, warmup: int, steps: int) -> tuple[float, float | None, float]:
    """(seconds per step, peak memory GiB on CUDA, FLOPs of one step)."""
    import torch

    cuda = device.type == "cuda"
    for _ in range(warmup):
        step()
    flops = count_flops(step)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return seconds, peak, flops


def gpu_suite(args: argparse.Namespace) -> list[dict]:
    import torch

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    size = 8 if args.smoke else 32
    batches = (2,) if args.smoke else tuple(args.gpu_batches)
    steps, warmup = (1, 1) if args.smoke else (args.gpu_steps, args.gpu_warmup)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = bf16_peak(name)
    rows = []
    for model_name in ("preact_resnet18", "wrn34_10"):
        for batch in batches:
            cases = [("featgap", m) for m in ("pgd_at", "trades", "afd", "afa")] + [("reference", "pgd_at")]
            for who, method in cases:
                row = {"model": model_name, "batch": batch, "image": [3, size, size], "who": who, "method": method,
                       "precision": "bf16 autocast, channels-last" if (who == "featgap" and device.type == "cuda")
                       else "fp32, NCHW"}
                try:
                    step, model = (featgap_step_fn(method, model_name, batch, size, device) if who == "featgap"
                                   else reference_step_fn(model_name, batch, size, device))
                    seconds, mem, flops = time_step(step, device, warmup, steps)
                    del step, model
                except torch.cuda.OutOfMemoryError:
                    step = model = None  # let the failed case's tensors go before the next one
                    gc.collect()
                    row["error"] = "out of memory"
                    rows.append(row)
                    torch.cuda.empty_cache()
                    print(f"{model_name:16} batch {batch:4} {who:9} {method:7} out of memory", flush=True)
                    continue
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                rate = batch / seconds
                tflops = flops / seconds / 1e12
                row.update({"seconds_per_step": seconds, "images_per_s": rate, "epoch_50k_s": 50_000 / rate,
                            "peak_memory_gib": mem, "flops_per_step": flops, "achieved_tflops": tflops,
                            "bf16_peak_tflops": peak, "fraction_of_bf16_peak": tflops / peak if peak else None,
                            "timed_steps": steps, "warmup_steps": warmup})
                rows.append(row)
                print(f"{model_name:16} batch {batch:4} {who:9} {method:7} {rate:9.1f} images/s  "
                      f"epoch(50k) {50_000 / rate:8.1f} s  "
                      + (f"peak {mem:6.2f} GiB  " if mem is not None else "")
                      + f"{tflops:7.2f} TFLOP/s" + (f" ({100 * tflops / peak:.1f}% of bf16 peak)" if peak else ""),
                      flush=True)
    by = {(r["model"], r["batch"], r["who"], r["method"]): r for r in rows if "images_per_s" in r}
    for (model_name, batch, who, method), r in by.items():  # ratios the issue asks for
        if who != "featgap":
            continue
        base = by.get((model_name, batch, "featgap", "pgd_at"))
        ref = by.get((model_name, batch, "reference", "pgd_at"))
        if base:
            r["step_time_vs_featgap_pgd_at"] = r["seconds_per_step"] / base["seconds_per_step"]
        if method == "pgd_at" and ref:
            r["speedup_vs_reference"] = ref["seconds_per_step"] / r["seconds_per_step"]
    return rows


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds per method (default 5)")
    p.add_argument("--methods", nargs="+", default=["pgd_at", "standard"], choices=["pgd_at", "standard"])
    p.add_argument("--fresh-repeats", type=int, default=0,
                   help="also time both as fresh processes, imports included, this many rounds (default 0)")
    p.add_argument("--gpu-suite", action="store_true", help="PreAct RN-18 / WRN-34-10 step timings (meant for cuda)")
    p.add_argument("--gpu-batches", type=int, nargs="+", default=[128, 512])
    p.add_argument("--gpu-steps", type=int, default=20, help="timed steps per GPU case (default 20)")
    p.add_argument("--gpu-warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--smoke", action="store_true", help="the GPU suite on 8×8 images, batch 2, one step")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/vs_reference_*.json)")
    p.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", default="pgd_at", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("FEATGAP_PROGRESS", "0")
    command = "python benchmarks/bench_vs_reference.py " + " ".join(sys.argv[1:] if argv is None else argv)

    if args.reference_only:  # one fresh-process run of the research loop (--fresh-repeats)
        import torch

        torch.set_num_threads(args.threads)
        loader, model, opt = reference_setup(args.device)
        reference_epoch(loader, model, opt, args.method, args.device)
        return 0

    if args.gpu_suite:
        env = environment(args.device)
        rows = gpu_suite(args)
        out = args.out or (Path(tempfile.gettempdir()) / "featgap_vs_reference_smoke.json" if args.smoke
                           else RESULTS / "vs_reference_gpu.json")
        write_json(out, {"benchmark": "bench_vs_reference --gpu-suite", "command": command, "device": args.device,
                         "smoke": args.smoke, "environment": env, "rows": rows})
        return 0

    env = environment(args.device)
    results = cpu_comparison(args)
    env["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    write_json(args.out or RESULTS / "vs_reference_cpu.json",
               {"benchmark": "bench_vs_reference (CPU)", "command": command, "device": args.device,
                "threads": args.threads, "repeats": args.repeats,
                "settings": {"model": "smallcnn", "dataset": "mnist5k (4,000 training digits)", "batch": BATCH,
                             "eps": EPS, "pgd_steps": STEPS, "pgd_step_size": ALPHA, "lr": LR,
                             "momentum": MOMENTUM, "weight_decay": WD},
                "environment": env, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
