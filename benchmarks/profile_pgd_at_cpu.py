"""Where a PGD-10 AT step of smallcnn on mnist5k spends its time on the CPU: featgap vs the reference loop.

    python benchmarks/profile_pgd_at_cpu.py [--threads 2] [--steps 8]

``torch.profiler`` over ``--steps`` training steps of each (after two untimed ones): featgap's
step as :meth:`featgap.train.Trainer.fit` runs it (its ``BatchLoader``, the method's loss with
:func:`featgap.attacks.pgd`, SGD, the metrics read back) and the reference loop's
(``bench_vs_reference.py``: a ``DataLoader`` over a ``TensorDataset``, PGD with
``torch.autograd.grad``, ``.item()``). Writes both operator tables (self CPU time, top 25) to
``benchmarks/results/profile_pgd_at_cpu.txt``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_vs_reference as ref  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "profile_pgd_at_cpu.txt"


def featgap_steps(n: int):
    import torch

    from featgap import data, methods, models
    from featgap.methods import AttackSettings

    torch.manual_seed(0)
    train = data.load("mnist5k", "train")
    info = data.info("mnist5k")
    model = models.create("smallcnn", 10, 1, info.mean, info.std)
    method = methods.get("pgd_at")(AttackSettings(steps=ref.STEPS))
    opt = torch.optim.SGD(method.param_groups(model), lr=ref.LR, momentum=ref.MOMENTUM, weight_decay=ref.WD)
    loader = data.BatchLoader(train, ref.BATCH, shuffle=True, drop_last=True)
    batches = iter(loader)

    def step() -> None:
        x, y = next(batches)
        loss, metrics = method.loss(model, x, y, ref.EPS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for v in (loss.detach(), *metrics.values()):
            float(v)

    model.train()
    return step


def reference_steps(n: int):
    import torch.nn.functional as F

    loader, model, opt = ref.reference_setup("cpu")
    batches = iter(loader)

    def step() -> None:
        x, y = next(batches)
        x_adv = ref.reference_pgd(model, x, y)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        (logits.argmax(1) == y).sum().item()

    model.train()
    return step


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    report = io.StringIO()
    report.write(f"# python benchmarks/profile_pgd_at_cpu.py {' '.join(sys.argv[1:])}\n"
                 f"# torch {torch.__version__}, {args.threads} threads, {args.steps} profiled steps each, "
                 f"batch {ref.BATCH}, PGD-{ref.STEPS}\n")
    for name, make in (("featgap", featgap_steps), ("reference", reference_steps)):
        step = make(args.steps + 2)
        step(), step()
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        wall = (time.perf_counter() - start) / args.steps
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        report.write(f"\n## {name}: {wall * 1000:.1f} ms per step under the profiler\n{table}\n")
        print(f"{name}: {wall * 1000:.1f} ms per step (profiled)", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report.getvalue())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
