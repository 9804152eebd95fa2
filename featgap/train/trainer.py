"""The one training loop, shared by every method.

:class:`Trainer` owns what every method needs and none should rewrite: device choice, data on
the device, SGD with momentum and weight decay, the lr schedule and ε warm-up, bf16 autocast
and channels-last on CUDA, weight EMA, a progress bar, per-epoch monitoring (accuracy and the
feature gap), checkpoints, and exact resume. A method (:mod:`featgap.methods`) only turns a
batch into a loss.

Read :meth:`Trainer.fit` top to bottom: it is the whole algorithm. Under ``torchrun`` the same
loop trains data-parallel: each line marked ``torchrun`` is a no-op in one process
(:mod:`featgap.train.distributed` explains what is averaged, what agrees and what rank 0 alone does).

>>> cfg = TrainConfig(dataset="mnist5k", model="smallcnn", method="pgd_at", epochs=5)
>>> model = Trainer(cfg, out="runs/pgd_at").fit()
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from featgap import cache, methods, models, runs, threads
from featgap import data as fg_data
from featgap.errors import FeatgapError
from featgap.progress import progress
from featgap.train import distributed
from featgap.train.config import TrainConfig, differing_settings
from featgap.train.ema import ModelEMA
from featgap.train.monitor import EpochMonitor
from featgap.train.schedule import lr_factor, ramp
from featgap.train.step_log import StepLog

Callback = Callable[[nn.Module, int], dict]
"""``callback(eval_model, epoch) -> dict`` merged into that epoch's ``metrics.jsonl`` record."""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks cuda > mps > cpu; an unavailable explicit choice is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    import re

    if not isinstance(name, str) or not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise FeatgapError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FeatgapError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FeatgapError("--device mps: MPS is not available on this machine (use --device cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Train ``config.method`` on ``config.dataset``; write a run directory to ``out``.

    Everything that can be wrong with the input (names, ε, data on disk, the ``init``
    checkpoint, an ``out`` that holds another run) is checked in the constructor, before a
    single file is written. ``out=None`` trains without writing anything.
    """

    def __init__(self, config: TrainConfig, out: str | Path | None = None,
                 callbacks: Sequence[Callback] = (), monitor: bool = True, links: dict | None = None) -> None:
        self.config = cfg = config.resolved()
        self.out = Path(out) if out is not None else None
        self.links = links
        self.device = resolve_device(cfg.device)
        # under torchrun: join the process group, cuda:LOCAL_RANK (featgap.train.distributed); else a no-op
        self.dist, self.device = distributed.setup(self.device)
        self._check_distributed(cfg)
        seed_everything(cfg.seed)
        method_cls = methods.get(cfg.method)
        if method_cls.needs_init and cfg.init is None:
            raise FeatgapError(f"method {cfg.method} fine-tunes a trained model: pass --init RUN_DIR")
        self.info = fg_data.info(cfg.dataset)
        train = fg_data.load(cfg.dataset, "train", cfg.data_root, cfg.download)
        test = fg_data.load(cfg.dataset, "test", cfg.data_root, cfg.download)
        monitor_set = test
        if cfg.val_fraction > 0:
            train, monitor_set = train.split_off(cfg.val_fraction, seed=cfg.seed)
        self.train_set = train
        self.extra_set = fg_data.load_extra(cfg.extra_data, self.info) if cfg.extra_data else None
        self.model = models.create(cfg.model, self.info.num_classes, self.info.in_channels,
                                   self.info.mean, self.info.std)
        self.init_source = runs.load_init_weights(self.model, cfg.init, cfg.model) if cfg.init else None
        self.method = method_cls(methods.AttackSettings(cfg.attack_steps, cfg.attack_step_size, cfg.norm),
                                 **cfg.extra)
        # A method may train more than the model (AFD: a student with a disentangler and a teacher).
        self.model = self.method.start(self.model)
        self.callbacks: list[Callback] = list(callbacks)
        if monitor and cfg.monitor_n > 0:
            self.callbacks.insert(0, EpochMonitor(monitor_set, n=cfg.monitor_n, eps=cfg.eps,
                                                  steps=cfg.monitor_pgd_steps, norm=cfg.norm, device=self.device))
        if cfg.probe_n > 0:
            from featgap.probes import GapTrajectory, LayerReader

            LayerReader(self.model, cfg.probe_layers)  # unknown layer names fail here, before any file is written
            self.callbacks.append(GapTrajectory(monitor_set, n=cfg.probe_n, eps=cfg.eps, steps=cfg.monitor_pgd_steps,
                                                norm=cfg.norm, layers=cfg.probe_layers, device=self.device,
                                                seed=cfg.seed))
        self.start_epoch = 0
        self.step = 0
        self._check_out_dir()
        self.dist.barrier()  # every rank has checked --out before rank 0 writes to it

    def _check_distributed(self, cfg: TrainConfig) -> None:
        """Settings that several processes cannot honour: one-line errors, on every rank alike."""
        n = self.dist.world_size
        if n > 1 and cfg.batch_size % n:
            raise FeatgapError(f"--batch-size {cfg.batch_size} is the global batch and must be divisible by the "
                               f"{n} processes torchrun started")
        if n > 1 and cfg.method == "afd" and cfg.extra.get("update") == "two_step":
            raise FeatgapError("AFD update=two_step takes an optimiser step inside the loss, whose gradients "
                               "are not averaged across processes; under torchrun use update=summed")

    # ------------------------------------------------------------------ run directory
    def _config_record(self) -> dict:
        m = self.model
        return {"config": self.config.as_dict(),
                "model_card": {"name": self.config.model, "num_classes": m.num_classes, "in_channels": m.in_channels,
                               "feature_dim": m.feature_dim, "mean": list(self.info.mean), "std": list(self.info.std),
                               "layer_names": list(m.layer_names)},
                "dataset": self.info.as_dict(), "init": self.init_source,
                "environment": {**runs.environment_info(), "threads": threads.record()},
                **({"stages": self.links} if self.links else {}),
                **({"distributed": self.dist.describe()} if self.dist.enabled else {})}

    def _check_out_dir(self) -> None:
        out = self.out
        if out is None or not out.exists():
            return
        if not out.is_dir():
            raise FeatgapError(f"--out {out} exists and is not a directory")
        if not (out / runs.CONFIG).exists():
            if any(p.name != runs.LOCK and not p.name.endswith(cache.TMP_SUFFIX) for p in out.iterdir()):
                raise FeatgapError(f"--out {out} is a non-empty folder that is not a featgap run; choose another")
            return
        if (out / runs.SUMMARY).exists():
            raise FeatgapError(f"--out {out} holds a finished run; choose another --out or delete it")
        differ = differing_settings(runs.read_settings(out), self.config)
        if differ:
            raise FeatgapError(f"--out {out} holds an unfinished run with other settings ({', '.join(differ)}); "
                               "resume it with the same settings or choose another --out")
        self._resume_from = out

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, epoch: int, optimizer: torch.optim.Optimizer, ema: ModelEMA | None) -> None:
        assert self.out is not None
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if ema is not None:
            tensors.update({f"ema.{k}": v for k, v in ema.module.state_dict().items()})
        # The plain model the method exports (AFD: disentangler folded in), so that runs.load
        # reads an unfinished run without knowing its method. Only when it differs from the
        # trained module; resume never reads it.
        for kind, module in (("model", self.model), ("ema", ema.module if ema is not None else None)):
            plain = self.method.export(module) if module is not None else module
            if plain is not module:
                tensors.update({f"export.{kind}.{k}": v for k, v in plain.state_dict().items()})
        for idx, st in optimizer.state_dict()["state"].items():
            tensors.update({f"optim.{idx}.{k}": v for k, v in st.items() if torch.is_tensor(v)})
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        tensors.update(getattr(self, "_rank_rng", {}))  # torchrun: ranks 1… (Distributed.rng_states)
        # epoch and step travel inside the one file resume reads, so a crash between the two writes
        # below cannot pair a state with another epoch's number (state.json is for people and tools)
        tensors["state.epoch"] = torch.tensor(epoch, dtype=torch.int64)
        tensors["state.step"] = torch.tensor(self.step, dtype=torch.int64)
        runs.write_tensors(self.out / runs.LAST, tensors)
        self.saved_epoch = epoch
        runs.write_json(self.out / runs.STATE, {"epoch": epoch, "step": self.step})

    def _keep_epoch(self, epoch: int, eval_model: nn.Module) -> None:
        """``--keep-checkpoints``: the plain model exported after ``epoch`` (as the final export is), kept for good.

        Written before that epoch's training state, so a resumable epoch always has its file; a
        rerun of an interrupted epoch rewrites it atomically with the same numbers.
        """
        assert self.out is not None
        runs.write_tensors(runs.epoch_checkpoint(self.out, epoch), self.method.export(eval_model).state_dict())

    def _resume(self, optimizer: torch.optim.Optimizer, ema: ModelEMA | None) -> None:
        out = self.out
        assert out is not None
        if not (out / runs.LAST).exists():
            if self.dist.is_main:  # under torchrun every rank reads the run, rank 0 alone writes it
                runs.truncate_metrics(out, 0)  # killed in epoch 1 after its metrics line: it is trained again
            return
        full = runs.read_tensors(out / runs.LAST)
        state = ({"epoch": int(full["state.epoch"]), "step": int(full["state.step"])} if "state.epoch" in full
                 else runs.read_json(out / runs.STATE))  # a checkpoint of an older featgap
        part = lambda p: {k[len(p):]: v for k, v in full.items() if k.startswith(p)}  # noqa: E731
        runs.load_state_into(self.model, part("model."), str(out))
        if ema is not None:
            ema.module.load_state_dict(part("ema."))
        opt_state = optimizer.state_dict()
        buffers: dict[int, dict] = {}
        for k, v in part("optim.").items():
            idx, name = k.split(".", 1)
            buffers.setdefault(int(idx), {})[name] = v.to(self.device)
        opt_state["state"] = buffers
        optimizer.load_state_dict(opt_state)
        torch.set_rng_state(full["rng.cpu"])
        if "rng.cuda" in full and self.device.type == "cuda":
            torch.cuda.set_rng_state(full["rng.cuda"], self.device)
        if not self.dist.restore_rng(full, self.config.seed, state["epoch"]):
            print(f"rank {self.dist.rank}: the checkpoint holds no random state for this rank (it was written by "
                  "fewer processes); it continues with a fresh stream", flush=True)
        self.start_epoch, self.step = state["epoch"], state["step"]
        self.saved_epoch = self.start_epoch
        # metrics.jsonl may be ahead of the state (killed between an epoch's line and its checkpoint):
        # drop those lines, so that every epoch is recorded exactly once
        records = runs.truncate_metrics(out, self.start_epoch) if self.dist.is_main else []
        if records:
            self.last_record = records[-1]

    # ------------------------------------------------------------------ the loop
    def fit(self) -> nn.Module:
        """Train; return the model to evaluate (the EMA copy when EMA is on), in eval mode.

        With ``out``, the run directory is locked for the whole fit (``OUT/.lock``,
        :class:`featgap.runs.RunLock`): a second process pointed at it is refused. Every file is
        written atomically, and a process killed at any moment leaves a run that the same call
        resumes exactly. A failed write (disk full, no permission) and a non-finite loss stop
        with a one-line :class:`FeatgapError`, the last good checkpoint kept. ``detect_anomaly``
        runs the whole fit under :func:`torch.autograd.detect_anomaly`.
        """
        anomaly = torch.autograd.detect_anomaly() if self.config.detect_anomaly else contextlib.nullcontext()
        if self.out is None or not self.dist.is_main:  # ranks 1… of a torchrun job read the run, never write it
            with anomaly:
                return self._fit()
        with runs.RunLock(self.out), anomaly:
            self._check_out_dir()  # again, now that no other process can write it
            for folder in (self.out, self.out / "checkpoints"):
                cache.remove_temporaries(folder)  # left by a process killed mid-write
            try:
                return self._fit()
            except runs.WriteError as err:
                raise runs.WriteError(f"{err}; {self._kept()}, rerun the same command to resume once "
                                      "the disk has space and the folder is writable") from None

    def _kept(self) -> str:
        """Which checkpoint survives a stop: for the one-line errors of :meth:`fit`."""
        epoch = getattr(self, "saved_epoch", None)
        if self.out is None:
            return "nothing was saved (no out)"
        if epoch is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint (epoch {epoch}, {self.out / runs.LAST}) is kept"

    def _non_finite(self, value: float, epoch: int, i: int, steps: int, run_step: int) -> str:
        return (f"non-finite loss ({value}) at epoch {epoch + 1}, step {i + 1} of {steps} (step {run_step} of "
                f"the run): training stopped; {self._kept()}. Lower --lr (or check the data), or rerun with "
                "--detect-anomaly to find the operation that produced it")

    def _fit(self) -> nn.Module:
        cfg, dev = self.config, self.device
        cuda = dev.type == "cuda"
        model = self.model.to(dev)
        self.method.to(dev)
        if cuda and cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # torchrun: SyncBatchNorm on CUDA (or plain batch norm whose buffers follow rank 0's), rank 0's
        # weights everywhere, and each rank its own random stream for PGD's starts; one process: nothing
        model, plain_bn = self.dist.prepare_model(model)
        self.dist.broadcast_module(model)
        self.dist.seed_rank(cfg.seed)
        optimizer = torch.optim.SGD(self.method.param_groups(model), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.optimizer = optimizer
        """The optimiser of this fit (kept for inspection: ``param_groups`` with each group's ``lr``)."""
        ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay else None
        if self.out is not None:
            if getattr(self, "_resume_from", None) is not None:
                self._resume(optimizer, ema)
            elif self.dist.is_main:
                runs.write_json(self.out / runs.CONFIG, self._config_record())
                cache.crash_point("config")
        loader = fg_data.BatchLoader(self.train_set, cfg.batch_size, shuffle=True, augment=cfg.augment,
                                     drop_last=len(self.train_set) > cfg.batch_size, device=dev, seed=cfg.seed,
                                     channels_last=cuda and cfg.channels_last, extra=self.extra_set,
                                     extra_fraction=cfg.extra_fraction)
        loader.epoch = self.start_epoch
        autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda and cfg.amp)
        started = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.epochs):
            epoch_start = time.perf_counter()
            model.train()
            log = StepLog()  # the steps' loss and metrics stay on the device; read every READ_EVERY steps
            first_bad: str | None = None
            bar = progress(loader, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}", leave=False)
            for i, (x, y) in enumerate(bar):
                # torchrun: every rank draws the same global batch and keeps its part
                x, y = distributed.slice_of(x, self.dist), distributed.slice_of(y, self.dist)
                t = epoch + i / len(loader)
                lr = cfg.lr * lr_factor(t, cfg.epochs, cfg.schedule, cfg.lr_steps or (), cfg.warmup_epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                eps = cfg.eps * ramp(t, cfg.eps_warmup_epochs)
                with autocast:
                    loss, metrics = self.method.loss(model, x, y, eps)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.dist.average_gradients((p for g in optimizer.param_groups for p in g["params"]), len(y))
                optimizer.step()
                self.dist.sync_buffers(plain_bn)
                self.step += 1
                if ema is not None:
                    ema.update(model, self.step)
                log.add({"loss": loss, **metrics}, len(y))
                if log.due(i, len(loader)):  # one host synchronisation per READ_EVERY steps, none in between
                    sums, seen, bad = log.read()
                    if bad is not None and first_bad is None:  # a non-finite loss, named by its own step
                        first_bad = self._non_finite(bad[1], epoch, bad[0], len(loader), self.step - i + bad[0])
                        if not self.dist.enabled:
                            raise FeatgapError(first_bad)
                    bar.set_postfix({k: f"{v / seen:.3f}" for k, v in sums.items()}, refresh=False)
                cache.crash_point("step")
            sums, seen, _ = log.read()
            sums, seen = self.dist.sum_over_ranks(sums, seen)  # torchrun: the global batch's averages
            # torchrun: a rank that met a non-finite loss goes on to here (stopping alone would leave
            # the others waiting in a collective); every rank sees the non-finite sum and stops.
            if not math.isfinite(sums.get("loss", 0.0)):
                raise FeatgapError(first_bad or f"non-finite loss on another torchrun rank in epoch {epoch + 1}: "
                                                f"training stopped; {self._kept()}")
            eval_model = ema.module if ema is not None else model
            record = {"epoch": epoch + 1, "step": self.step, "lr": lr, "eps": eps,
                      **{f"train_{k}": v / max(seen, 1) for k, v in sums.items()}}
            for callback in self.callbacks if self.dist.is_main else ():  # torchrun: rank 0 monitors, others wait
                record.update(callback(eval_model, epoch))
                cache.crash_point("callback")
            record["seconds"] = time.perf_counter() - epoch_start
            record = self.dist.broadcast_object(record)
            if self.out is not None:
                self._rank_rng = self.dist.rng_states()  # a collective: every rank, before rank 0 writes
            if self.out is not None and self.dist.is_main:
                runs.append_jsonl(self.out / runs.METRICS, record)
                cache.crash_point("metrics")  # a resume drops this line again: the state below is missing
                if cfg.keep_checkpoints and (epoch + 1) % cfg.keep_checkpoints == 0:
                    self._keep_epoch(epoch + 1, eval_model)
                self._save_checkpoint(epoch + 1, optimizer, ema)
            self.last_record = record
        final = self.method.export(ema.module if ema is not None else model)
        if self.out is not None and self.dist.is_main:
            runs.write_tensors(self.out / runs.FINAL, final.state_dict())
            runs.write_json(self.out / runs.SUMMARY, {
                "epochs": cfg.epochs, "exported": "ema" if ema is not None else "raw", "device": str(dev),
                "train_seconds_this_session": time.perf_counter() - started,
                "last_epoch": getattr(self, "last_record", None)})
        if self.dist.is_main:
            print(finished_line(cfg.method, cfg.epochs, time.perf_counter() - started,
                                getattr(self, "last_record", None), self.out), flush=True)  # stays after the bars
        self.dist.barrier()  # the run directory is complete before any rank goes on (e.g. to stage 2)
        distributed.dump_for_test(self.dist, model)
        return final.eval()


def finished_line(method: str, epochs: int, seconds: float, record: dict | None, out: Path | None) -> str:
    """The one line ``fit`` prints when a run finishes: what, how long, the last monitor numbers, where.

    >>> finished_line("pgd_at", 6, 31.4, {"monitor_clean_acc": 95.0, "monitor_pgd_acc": 70.0, "gap_l2": 3.5}, Path("r"))
    'pgd_at finished 6 epochs in 31 s: monitor clean 95.0%, PGD 70.0%, gap L2 3.500 → r'
    """
    record = record or {}
    parts = [f"{label} {record[key]:.1f}%" for key, label in (("monitor_clean_acc", "monitor clean"),
                                                                    ("monitor_pgd_acc", "PGD")) if key in record]
    if "gap_l2" in record:
        parts.append(f"gap L2 {record['gap_l2']:.3f}")
    numbers = ": " + ", ".join(parts) if parts else ""
    return f"{method} finished {epochs} epochs in {seconds:.0f} s{numbers} → {out if out is not None else '(not saved)'}"

