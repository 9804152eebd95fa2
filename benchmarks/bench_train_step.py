"""Training-step throughput of featgap methods at CIFAR-10 shape (ResNet-18, PGD-10), synthetic data.

    python benchmarks/bench_train_step.py --device cuda                                  # AFD vs vAFT, batch 128
    python benchmarks/bench_train_step.py --device cuda --methods pgd_at afa --batch-size 256   # AFA vs PGD-AT
    python benchmarks/bench_train_step.py --device cpu --batches 2                       # a CPU: a rough figure only

Each training step is what :class:`featgap.train.Trainer` runs — the method's inner maximisation
(PGD-10, the model in eval mode), then one forward/backward and an SGD step, with bf16 autocast
and channels-last on CUDA — on random 32×32 images, so no dataset is needed. The first
``--warmup`` batches (cuDNN autotuning, allocator growth) are not timed. Prints images/s, the
time a 50,000-image epoch would take, and peak GPU memory.

What to expect: PGD dominates every adversarial method. AFD adds the disentangler's two d×d
products, a second head pass and one teacher forward on the clean batch per step. AFA's
pre-training adds one clean forward for the attack's fixed targets and trains on two views
(clean and adversarial) in two passes, where PGD-AT trains on one.
"""

from __future__ import annotations

import argparse
import time

import torch

from featgap import methods, models
from featgap.methods import AttackSettings


def run(method_name: str, device: torch.device, batches: int, warmup: int, batch_size: int,
        step_size: float) -> tuple[float, float]:
    """(images per second, peak GPU memory in GiB — 0 on CPU) for ``batches`` timed steps."""
    torch.manual_seed(0)
    model = models.create("resnet18", 10, 3, mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616))
    method = methods.get(method_name)(AttackSettings(steps=10, step_size=step_size))
    model = method.start(model).to(device)
    method.to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda)
    model.train()
    for i in range(warmup + batches):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        with autocast:
            loss, _ = method.loss(model, x, y, 8 / 255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0
    return batches * batch_size / seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=50, help="timed batches per method (default 50)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=["vaft", "afd"], help="methods to time (default vaft afd)")
    parser.add_argument("--step-size", type=float, default=0.007, help="PGD step (default 0.007; AFA's presets: 2/255)")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}; ResNet-18, batch {args.batch_size}, PGD-10 (ε 8/255, step {args.step_size:g}), "
          f"{args.batches} timed batches")
    for method in args.methods:
        rate, peak = run(method, device, args.batches, args.warmup if device.type == "cuda" else 1, args.batch_size,
                         args.step_size)
        epoch = 50_000 / rate
        print(f"{method:7} {rate:9.1f} images/s   CIFAR-10 epoch (50,000 images) ≈ {epoch / 60:6.1f} min"
              + (f"   peak memory {peak:5.2f} GiB" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()
