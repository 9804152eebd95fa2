"""Training in stages: a pre-training method (AFA) and the fine-tuning that must follow it.

``featgap train --method afa --out runs/afa`` trains two runs, each a normal run directory:

* ``runs/afa-pretrain`` — stage 1, method ``afa`` (encoder + projection head);
* ``runs/afa`` — stage 2, ``alf`` or ``aff`` (``TrainConfig.finetune``), started from stage 1.

``--out`` names the run you evaluate (the fine-tuned model); the pre-training run sits beside
it. Both ``config.json`` files carry the same ``"stages"`` entry linking the two, and stage 2's
``init`` points to stage 1. Rerunning the command continues where it stopped: a finished
stage 1 with the same settings is reused, an unfinished one resumes.

Methods without a second stage go straight to :class:`~featgap.train.Trainer`, so
:func:`fit` is the one entry point for ``featgap train``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from featgap import runs
from featgap.errors import FeatgapError
from featgap.train.config import TrainConfig, differing_settings
from featgap.train.distributed import is_main_process
from featgap.train.trainer import Callback, Trainer

PRETRAIN_SUFFIX = "-pretrain"


def stage_dirs(out: str | Path, pretrain_dir: str | Path | None = None) -> tuple[Path, Path]:
    """``(stage-1 run, stage-2 run)`` for ``--out``: ``OUT-pretrain`` (or ``pretrain_dir``) and ``OUT``."""
    out = Path(out)
    return (Path(pretrain_dir) if pretrain_dir is not None else out.with_name(out.name + PRETRAIN_SUFFIX)), out


def stage_links(config: TrainConfig, out: str | Path, pretrain_dir: str | Path | None = None) -> dict:
    """The ``"stages"`` entry both runs record in config.json."""
    pre, fine = stage_dirs(out, pretrain_dir)
    return {"pipeline": config.method,
            "stages": [{"stage": 1, "method": config.method, "run": str(pre)},
                       {"stage": 2, "method": config.finetune["method"], "run": str(fine)}]}


def _finished_same(run_dir: Path, config: TrainConfig) -> bool:
    """True if ``run_dir`` is a finished run of ``config`` (the same settings but the device)."""
    if not (run_dir / runs.SUMMARY).exists():
        return False
    differ = differing_settings(runs.read_config(run_dir)["config"], config)
    if differ:
        raise FeatgapError(f"{run_dir} holds a finished run with other settings ({', '.join(differ)}); "
                           "delete it or choose another --out")
    return True


def fit(config: TrainConfig, out: str | Path | None, callbacks: Sequence[Callback] = (),
        verbose: bool = True, pretrain_dir: str | Path | None = None) -> tuple[nn.Module, list[Trainer]]:
    """Train ``config`` (both stages for a pre-training method); return the final model and the trainers run.

    ``pretrain_dir`` puts stage 1 somewhere other than ``OUT-pretrain``: two fine-tunings (ALF
    and AFF) of one pre-training share it, the second reusing the finished stage 1.

    Stage 2 is checked before stage 1 starts as far as it can be without stage 1's weights
    (its settings, and that its run directory is free), so a bad command fails before anything
    is written.
    """
    cfg = config.resolved()
    verbose = verbose and is_main_process()  # under torchrun, rank 0 alone prints
    if cfg.finetune is None:
        trainer = Trainer(cfg, out=out, callbacks=callbacks)
        return trainer.fit(), [trainer]
    if out is None:
        raise FeatgapError(f"method {cfg.method} trains in two stages and needs --out")
    pre_dir, fine_dir = stage_dirs(out, pretrain_dir)
    links = stage_links(cfg, out, pretrain_dir)
    stage2 = cfg.finetune_config(init=str(pre_dir)).resolved()
    if (fine_dir / runs.SUMMARY).exists():
        raise FeatgapError(f"--out {fine_dir} holds a finished run; choose another --out or delete it")
    if fine_dir.exists() and (not fine_dir.is_dir() or (any(fine_dir.iterdir()) and not (fine_dir / runs.CONFIG).exists())):
        raise FeatgapError(f"--out {fine_dir} exists and is not a featgap run; choose another")
    trainers: list[Trainer] = []
    if _finished_same(pre_dir, cfg):
        if verbose:
            print(f"stage 1 ({cfg.method}): reusing the finished run {pre_dir}")
    else:
        trainer = Trainer(cfg, out=pre_dir, callbacks=callbacks, links=links)
        trainer.fit()
        trainers.append(trainer)
        if verbose:
            print(f"stage 1 ({cfg.method}) finished: {pre_dir}")
    trainer = Trainer(stage2, out=fine_dir, callbacks=callbacks, links=links)
    model = trainer.fit()
    trainers.append(trainer)
    return model, trainers


__all__ = ["PRETRAIN_SUFFIX", "fit", "stage_dirs", "stage_links"]
