"""Training: one :class:`Trainer`, configured by a :class:`TrainConfig`."""

from featgap.train.config import TrainConfig
from featgap.train.trainer import Trainer, resolve_device

__all__ = ["TrainConfig", "Trainer", "resolve_device"]
