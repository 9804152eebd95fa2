"""Named training recipes: ``featgap train --preset NAME`` (or ``TrainConfig(**preset(NAME))``).

A preset is a dict of :class:`featgap.train.TrainConfig` field values. On the command line it
is the base: every flag you give overrides it, and fields neither sets keep TrainConfig's
defaults. ``featgap train --help`` lists the names (and so does the error for an unknown one).
A preset's ``extra`` holds method options under the names the method declares
(:attr:`featgap.methods.Method.options`): the keys of config.json's ``extra``, and the
``--{method}-{option}`` flags that override them (``"beta"`` of ``trades`` is ``--trades-beta``).
The ``lr_steps`` milestones are absolute epochs: overriding ``--epochs`` does not rescale them.

Where the numbers come from
---------------------------
The CIFAR presets reproduce the AFD paper's fine-tuning recipe ("AFD: Mitigating Feature Gap
for Adversarial Robustness by Feature Disentanglement", arXiv 2401.14707) as its authors'
reference code runs it, described in ``docs/methods/afd.md`` ("spec" below; sections "One
training step" and "Defaults and where they come from"):

* optimiser (spec, "Defaults"): SGD, lr 0.025, momentum 0.9, weight decay 5e-4, batch 128,
  20 epochs;
* lr schedule (spec, "Defaults"): "lr 0.025 for epochs 1-10, ×0.8 at epoch 11, then halved at
  13, 15, 17, 19". featgap counts epochs from 0 and multiplies the lr by each factor once the
  0-based epoch reaches its milestone (:func:`featgap.train.schedule.lr_factor`), so 1-based
  epoch 11 is milestone 10: ``((10, 0.8), (12, 0.5), (14, 0.5), (16, 0.5), (18, 0.5))``;
* training attack (spec, step 1): PGD, L∞, ε = 8/255, 10 steps of 0.007, random start;
* weight EMA (spec, "Defaults"): decay min(0.999, (s+1)/(s+10)); the EMA model is evaluated
  and saved (featgap's ``ema_decay`` is exactly that rule);
* augmentation (spec: random crop 32, pad 4, plus horizontal flip) is the CIFAR datasets'
  default ``crop_flip``, so the presets leave ``augment`` unset;
* AFD loss weights, passed to the method through ``TrainConfig.extra``: CIFAR-10 α = 0.05,
  β = 0.25, γ = 25 (spec, "Defaults"); CIFAR-100 α = 0.1, β = 1.0, γ = 50 (spec: the reference
  code's CIFAR-100 runs used α = 0.1, β = 1-2, γ = 50; we take the low end β = 1.0).

featgap's own additions: ``probe_n`` records the per-layer feature-gap trajectory every epoch
(the paper's per-epoch gap figure, with confidence intervals) on 500 monitor images.

Every ``-afd`` preset has a ``-vaft`` twin, the paper's baseline (spec, "Baseline it is compared
with": "same schedule, no disentangler, no teacher"): the same values with ``method="vaft"`` and
no ``extra``. The twins are generated from the AFD presets, so each schedule lives in one place.
Both methods fine-tune, so give ``--init`` (a naturally trained run) with any of them.

``mnist5k-smallcnn-*`` is a CPU-sized teaching version (minutes, no download): the AFD
schedule's shape compressed to 10 epochs, MNIST's ε = 0.3 ramped up over the first 2 epochs
(as for the demo's PGD-AT), the attack step 2.5·ε/steps, and learning rates chosen on a
validation split: AFD 0.04, vAFT 0.08 (the one place where the twins differ).
"""

from __future__ import annotations

import copy

from featgap.errors import FeatgapError

AFD_CIFAR10_WEIGHTS = {"alpha": 0.05, "beta": 0.25, "gamma": 25.0}
"""AFD paper / reference code, CIFAR-10 (spec "Defaults")."""
AFD_CIFAR100_WEIGHTS = {"alpha": 0.1, "beta": 1.0, "gamma": 50.0}
"""Reference code, CIFAR-100: α 0.1, β 1-2 (we take 1.0), γ 50 (spec "Defaults")."""

_AFD_CIFAR_RECIPE = {
    "method": "afd",
    "epochs": 20, "batch_size": 128, "lr": 0.025, "momentum": 0.9, "weight_decay": 5e-4,
    "schedule": "piecewise",
    # 1-based: 0.025 for epochs 1-10, ×0.8 at 11, ×0.5 at 13, 15, 17, 19 (0-based milestones)
    "lr_steps": ((10.0, 0.8), (12.0, 0.5), (14.0, 0.5), (16.0, 0.5), (18.0, 0.5)),
    "eps": 8 / 255, "norm": "linf", "attack_steps": 10, "attack_step_size": 0.007,
    "ema_decay": 0.999,
    "probe_n": 500,
}

# mnist5k-smallcnn: the learning rates were chosen on a validation split (20 % of the training
# digits, seed 0, PGD-10 accuracy after the last epoch) over 0.005-0.16 by
# benchmarks/afd_vs_vaft.py --tune: AFD 0.04 (0.08 and above collapse to chance), vAFT 0.08.
# The table is in docs/results.md.
MNIST_VAFT_LR = 0.08
_AFD_MNIST_RECIPE = {
    "method": "afd",
    "epochs": 10, "batch_size": 128, "lr": 0.04, "momentum": 0.9, "weight_decay": 5e-4,
    "schedule": "piecewise",
    # the AFD shape in 10 epochs: ×0.8 at (1-based) epoch 6, ×0.5 at 7, 8, 9, 10
    "lr_steps": ((5.0, 0.8), (6.0, 0.5), (7.0, 0.5), (8.0, 0.5), (9.0, 0.5)),
    "eps": 0.3, "norm": "linf", "attack_steps": 10, "attack_step_size": None,  # None: 2.5·ε/steps
    # MNIST adversarial training at the full ε = 0.3 from the first step often collapses to a
    # constant prediction (vAFT did, in a 1-epoch check); ramping ε over 2 epochs avoids it.
    "eps_warmup_epochs": 2.0,
    "ema_decay": 0.999,
    "probe_n": 200, "monitor_n": 200,
}

_AFD_PRESETS: dict[str, dict] = {
    "cifar10-resnet18-afd": {"dataset": "cifar10", "model": "resnet18", **_AFD_CIFAR_RECIPE,
                             "extra": AFD_CIFAR10_WEIGHTS},
    "cifar10-wrn34-10-afd": {"dataset": "cifar10", "model": "wrn34_10", **_AFD_CIFAR_RECIPE,
                             "extra": AFD_CIFAR10_WEIGHTS},
    "cifar100-resnet18-afd": {"dataset": "cifar100", "model": "resnet18", **_AFD_CIFAR_RECIPE,
                              "extra": AFD_CIFAR100_WEIGHTS},
    "cifar100-wrn34-10-afd": {"dataset": "cifar100", "model": "wrn34_10", **_AFD_CIFAR_RECIPE,
                              "extra": AFD_CIFAR100_WEIGHTS},
    "mnist5k-smallcnn-afd": {"dataset": "mnist5k", "model": "smallcnn", **_AFD_MNIST_RECIPE,
                             "extra": AFD_CIFAR10_WEIGHTS},
}


def _vaft_twin(afd_values: dict) -> dict:
    """The vAFT baseline of an AFD preset: same schedule and attack, no AFD options."""
    return {**afd_values, "method": "vaft", "extra": {}}


PRESETS: dict[str, dict] = {}
"""Preset name -> TrainConfig field values. Read them through :func:`preset` (a copy)."""
for _name, _values in _AFD_PRESETS.items():
    PRESETS[_name] = _values
    PRESETS[_name.removesuffix("-afd") + "-vaft"] = _vaft_twin(_values)
PRESETS["mnist5k-smallcnn-vaft"]["lr"] = MNIST_VAFT_LR  # tuned separately (see above)
del _name, _values

# ---------------------------------------------------------------- AFA (docs/methods/afa.md)
# AFA's paper gives no schedule we could read; the CIFAR presets (docs/methods/afa.md,
# "Presets") take the supervised-contrastive literature's: pre-training 100 epochs, batch 256,
# SGD lr 0.1 with cosine decay and 5 warm-up epochs, momentum 0.9, weight decay 1e-4; then ALF,
# 25 epochs at lr 0.1, piecewise (×0.1 at 50 % and 75 %). The training attack is AFA's
# inner maximisation: PGD L∞ ε = 8/255, 10 steps of 2/255, maximising the contrastive loss.
# The AFA options (τ 0.1, all anchors, ...) are the method's defaults, recorded in config.json.
_AFA_CIFAR_RECIPE = {
    "method": "afa",
    "epochs": 100, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
    "schedule": "cosine", "warmup_epochs": 5.0,
    "eps": 8 / 255, "norm": "linf", "attack_steps": 10, "attack_step_size": 2 / 255,
    "finetune": {"method": "alf", "epochs": 25, "lr": 0.1, "schedule": "piecewise", "warmup_epochs": 0.0},
}
# mnist5k: the CPU teaching version, ε = 0.3 ramped over 2 epochs as for every mnist5k
# adversarial run; 10 pre-training epochs, then 5 of ALF. The two learning rates (0.2 and 0.03)
# were chosen on a validation split by `benchmarks/afa_experiment.py --tune` (docs/results.md).
_AFA_MNIST_RECIPE = {
    "method": "afa",
    "epochs": 10, "batch_size": 128, "lr": 0.2, "momentum": 0.9, "weight_decay": 5e-4,
    "schedule": "cosine", "warmup_epochs": 1.0,
    "eps": 0.3, "norm": "linf", "attack_steps": 10, "attack_step_size": None, "eps_warmup_epochs": 2.0,
    "monitor_n": 200,
    "finetune": {"method": "alf", "epochs": 5, "lr": 0.03, "schedule": "piecewise", "warmup_epochs": 0.0,
                 "eps_warmup_epochs": 0.0},
}
PRESETS.update({
    "cifar10-resnet18-afa": {"dataset": "cifar10", "model": "resnet18", **_AFA_CIFAR_RECIPE},
    "cifar100-resnet18-afa": {"dataset": "cifar100", "model": "resnet18", **_AFA_CIFAR_RECIPE},
    "cifar10-wrn34-10-afa": {"dataset": "cifar10", "model": "wrn34_10", **_AFA_CIFAR_RECIPE},
    "mnist5k-smallcnn-afa": {"dataset": "mnist5k", "model": "smallcnn", **_AFA_MNIST_RECIPE},
})


def preset(name: str) -> dict:
    """A fresh copy of preset ``name``'s values; a one-line :class:`FeatgapError` if unknown."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise FeatgapError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


__all__ = ["AFD_CIFAR100_WEIGHTS", "AFD_CIFAR10_WEIGHTS", "PRESETS", "preset"]
