"""How long the feature-gap probe takes on the embedded test set.

    python benchmarks/bench_probes.py                # smallcnn, 1,000 mnist5k test images
    python benchmarks/bench_probes.py --device cuda  # on a GPU

A smallcnn is first trained for one epoch (standard training, a few seconds; the timings hardly
depend on the weights), then three things are timed, each the best of ``--repeats`` runs:

* ``gap_table`` with its own PGD-10 attack (ε = 0.3) at every layer: the whole probe;
* ``gap_table`` given the adversarial examples: the probe itself;
* ``summarize`` by layer and outcome with 1,000 bootstrap resamples.

Targets on a 2-core CPU (issue 3): whole probe ≤ 10 s, probe given the examples ≤ 1 s.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

os.environ.setdefault("FEATGAP_PROGRESS", "0")

from featgap import data  # noqa: E402
from featgap.probes import adversarial_examples, gap_table, summarize  # noqa: E402
from featgap.train import TrainConfig, Trainer  # noqa: E402


def best_of(repeats: int, fn) -> tuple[float, object]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = Trainer(TrainConfig(epochs=1, monitor_n=0, device=args.device), out=None).fit()
    x, y = data.load("mnist5k", "test").tensors()
    eps = 0.3
    whole, table = best_of(args.repeats, lambda: gap_table(model, x, y, eps=eps, steps=10))
    x_adv = adversarial_examples(model, x, y, eps=eps, steps=10)
    given, _ = best_of(args.repeats, lambda: gap_table(model, x, y, x_adv))
    summary, _ = best_of(args.repeats, lambda: summarize(table, by=("layer", "outcome")))
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {len(y)} images, "
          f"layers {', '.join(dict.fromkeys(table['layer']))}")
    print(f"{'gap_table incl. PGD-10':32} {whole:7.2f} s   (target ≤ 10 s on 2 CPU cores)")
    print(f"{'gap_table given x_adv':32} {given:7.2f} s   (target ≤ 1 s)")
    print(f"{'summarize, 1000 bootstrap':32} {summary:7.2f} s")


if __name__ == "__main__":
    main()
