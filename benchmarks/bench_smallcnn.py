"""Why smallcnn uses strided convolutions: input-gradient throughput on this CPU.

PGD spends nearly all its time in forward + backward-to-the-input passes, so that is what we
time, for three small MNIST architectures of similar capacity::

    python benchmarks/bench_smallcnn.py            # prints images/s for batch 128 and 512

conv+pool:  conv3×3(1→16) ReLU maxpool, conv3×3(16→32) ReLU maxpool, avgpool 4×4, FC 512→128
smallcnn:   conv4×4/2(1→16) ReLU, conv4×4/2(16→32) ReLU, FC 1568→128   (featgap's choice)
wide5x5:    conv5×5/2(1→32) ReLU, conv5×5/2(32→64) ReLU, FC 3136→128
"""

from __future__ import annotations

import time

import torch
from torch import nn

from featgap import models


def architectures() -> dict[str, nn.Module]:
    return {
        "conv+pool": nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 128), nn.ReLU(),
                                   nn.Linear(128, 10)),
        "smallcnn": models.create("smallcnn", 10, 1),
        "wide5x5": nn.Sequential(nn.Conv2d(1, 32, 5, stride=2, padding=2), nn.ReLU(),
                                 nn.Conv2d(32, 64, 5, stride=2, padding=2), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(64 * 49, 128), nn.ReLU(), nn.Linear(128, 10)),
    }


def input_grad_throughput(model: nn.Module, batch: int, repeats: int = 5) -> float:
    """Best of 3 timings of ``repeats`` forward+input-gradient passes, in images/s."""
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            xr = x.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(xr), y)
            torch.autograd.grad(loss, xr)
        best = max(best, repeats * batch / (time.perf_counter() - start))
    return best


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, model in architectures().items():
        rates = {b: input_grad_throughput(model, b) for b in (128, 512)}
        print(f"{name:10} " + "  ".join(f"batch {b}: {r:7.0f} img/s" for b, r in rates.items()))


if __name__ == "__main__":
    main()
