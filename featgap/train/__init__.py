"""Training: one :class:`Trainer`, configured by a :class:`TrainConfig`; :func:`fit` runs a
method's stages (AFA: pre-training, then fine-tuning) and is what ``featgap train`` calls."""

from featgap.train.config import TrainConfig
from featgap.train.stages import fit, stage_dirs
from featgap.train.trainer import Trainer, resolve_device

__all__ = ["TrainConfig", "Trainer", "fit", "resolve_device", "stage_dirs"]
