"""`TrainConfig`: every setting of a training run, validated before anything is written.

The resolved config (defaults filled in from the dataset, e.g. ε = 0.3 for MNIST) is what a
run directory's ``config.json`` records, so a run can be reproduced from that file alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from featgap.errors import FeatgapError

SCHEDULES = ("piecewise", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. ``None`` means "the dataset's default"."""

    dataset: str = "mnist5k"
    model: str = "smallcnn"
    method: str = "standard"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "piecewise"
    lr_steps: tuple[tuple[float, float], ...] | None = None
    """Piecewise schedule as ``((epoch, factor), ...)``: from ``epoch`` (0-based, may be fractional)
    on, the lr is multiplied by ``factor``. ``None``: ×0.1 at 50 % and 75 % of the epochs."""
    warmup_epochs: float = 0.0
    eps: float | None = None
    norm: str = "linf"
    attack_steps: int = 10
    attack_step_size: float | None = None
    eps_warmup_epochs: float = 0.0
    """Ramp the training ε linearly from 0 over this many epochs (helps MNIST PGD-AT start)."""
    trades_beta: float = 6.0
    ema_decay: float | None = None
    """Weight EMA: decay ``min(ema_decay, (s+1)/(s+10))`` at step s; the EMA model is evaluated and saved."""
    augment: str | None = None
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    channels_last: bool = True
    """channels-last memory format on CUDA (ignored on CPU)."""
    seed: int = 0
    device: str = "auto"
    data_root: str = "data"
    download: bool = False
    init: str | None = None
    """Run directory or .safetensors file to start from (required by fine-tuning methods)."""
    val_fraction: float = 0.0
    """Carve a stratified validation split from the training data; it then replaces the test
    subset for per-epoch monitoring (tune hyper-parameters on it, never on the test split)."""
    monitor_n: int = 500
    monitor_pgd_steps: int = 10
    probe_n: int = 0
    """Record the per-layer feature-gap trajectory (:class:`featgap.probes.GapTrajectory`) on this
    many images every epoch (0: off). It uses the monitor split and ``monitor_pgd_steps``."""
    probe_layers: tuple[str, ...] | None = None
    """Layers for the trajectory (``None``: the model's ``layer_names``)."""
    extra: dict = field(default_factory=dict)
    """Method-specific options (recorded as given)."""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise FeatgapError(f"unknown config keys: {', '.join(sorted(unknown))}")
        values = dict(values)
        if values.get("lr_steps") is not None:
            values["lr_steps"] = tuple(tuple(map(float, s)) for s in values["lr_steps"])
        if values.get("probe_layers") is not None:
            values["probe_layers"] = tuple(values["probe_layers"])
        return cls(**values)

    def resolved(self) -> TrainConfig:
        """Fill dataset defaults (ε, augmentation) and the default lr steps; validate."""
        from featgap import data, methods, models

        info = data.info(self.dataset)
        if self.model not in models.MODELS:
            models.create(self.model)  # raises the one-line error
        methods.get(self.method)
        cfg = replace(self,
                      eps=info.eps if self.eps is None else self.eps,
                      augment=info.augment if self.augment is None else self.augment,
                      lr_steps=self.lr_steps if self.lr_steps is not None else
                      ((0.5 * self.epochs, 0.1), (0.75 * self.epochs, 0.1)))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """One-line errors for settings that cannot work."""
        from featgap.data.batches import AUGMENTATIONS
        from featgap.attacks import NORMS

        def bad(msg: str) -> None:
            raise FeatgapError(msg)

        if self.eps is not None and not (0.0 <= self.eps <= 1.0 and math.isfinite(self.eps)):
            bad(f"--eps must be in [0, 1] (pixel units, e.g. 0.3 or 0.0314); got {self.eps}")
        if self.epochs < 1:
            bad(f"--epochs must be at least 1; got {self.epochs}")
        if self.batch_size < 1:
            bad(f"--batch-size must be at least 1; got {self.batch_size}")
        if self.lr <= 0:
            bad(f"--lr must be positive; got {self.lr}")
        if self.schedule not in SCHEDULES:
            bad(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.norm not in NORMS:
            bad(f"unknown norm {self.norm!r}; choose one of: {', '.join(NORMS)}")
        if self.augment is not None and self.augment not in AUGMENTATIONS:
            bad(f"unknown augmentation {self.augment!r}; choose one of: {', '.join(AUGMENTATIONS)}")
        if self.attack_steps < 1:
            bad(f"--attack-steps must be at least 1; got {self.attack_steps}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            bad(f"--ema must be in (0, 1); got {self.ema_decay}")
        if not 0.0 <= self.val_fraction < 1.0:
            bad(f"--val-fraction must be in [0, 1); got {self.val_fraction}")
        if self.monitor_n < 0:
            bad("--monitor-n must be non-negative")
        if self.probe_n < 0:
            bad("--probe-n must be non-negative")
        if self.device not in ("auto", "cpu", "mps") and not self.device.startswith("cuda"):
            bad(f"unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps")
