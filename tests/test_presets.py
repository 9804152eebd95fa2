"""Presets (featgap/presets.py) and how ``featgap train --preset`` combines them with flags."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from featgap.cli import build_parser, main, train_config_from_args
from featgap.errors import FeatgapError
from featgap.presets import PRESETS, preset
from featgap.train.config import TrainConfig
from featgap.train.schedule import lr_factor

AFD_NAMES = [n for n in PRESETS if n.endswith("-afd")]


def _config(*argv: str) -> TrainConfig:
    """The TrainConfig ``featgap train ARGV --out x`` would train with (nothing is trained)."""
    return train_config_from_args(build_parser().parse_args(["train", *argv, "--out", "x"]))


# ---------------------------------------------------------------- the presets themselves
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves(name):
    """Names known to the registries and values that validate; no data on disk needed."""
    cfg = TrainConfig(**preset(name), init="x", data_root="no/such/folder").resolved()
    assert cfg.dataset in name and cfg.model.replace("_", "-") in name and name.endswith(cfg.method)
    assert cfg.augment == ("crop_flip" if cfg.dataset.startswith("cifar") else "none")


def test_fourteen_presets_one_vaft_twin_per_afd_preset():
    assert len(PRESETS) == 14 and len(AFD_NAMES) == 5
    for name in AFD_NAMES:
        afd, vaft = preset(name), preset(name.removesuffix("-afd") + "-vaft")
        assert afd["method"] == "afd" and vaft["method"] == "vaft" and vaft["extra"] == {}
        # the mnist5k twins' learning rates were tuned separately on a validation split
        strip = {"method", "extra"} | ({"lr"} if name.startswith("mnist5k") else set())
        assert {k: v for k, v in afd.items() if k not in strip} == {k: v for k, v in vaft.items() if k not in strip}
    assert preset("mnist5k-smallcnn-afd")["lr"] == 0.04 and preset("mnist5k-smallcnn-vaft")["lr"] == 0.08


def _lr_at_middle_of_epoch(values: dict, epoch_1based: int) -> float:
    return values["lr"] * lr_factor(epoch_1based - 0.5, values["epochs"], values["schedule"], values["lr_steps"])


def _afd_spec_lr(epoch_1based: int) -> float:
    """docs/methods/afd.md, defaults: lr 0.025 for epochs 1-10, ×0.8 at epoch 11, then halved at 13, 15, 17, 19."""
    lr = 0.025
    if epoch_1based >= 11:
        lr *= 0.8
    for halving in (13, 15, 17, 19):
        if epoch_1based >= halving:
            lr *= 0.5
    return lr


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("cifar") and not n.endswith("-afa")])
def test_cifar_lr_schedule_matches_the_afd_spec_epoch_by_epoch(name):
    values = preset(name)
    assert values["epochs"] == 20 and values["schedule"] == "piecewise"
    got = [_lr_at_middle_of_epoch(values, e) for e in range(1, 21)]
    want = [_afd_spec_lr(e) for e in range(1, 21)]
    assert got == pytest.approx(want, rel=1e-12)
    # written out: 10 epochs at 0.025, then 0.02, 0.02, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.00125, 0.00125
    assert got[9] == pytest.approx(0.025) and got[10] == pytest.approx(0.02) and got[12] == pytest.approx(0.01)
    assert got[19] == pytest.approx(0.00125)


def test_mnist_schedule_is_the_afd_shape_in_ten_epochs():
    values = preset("mnist5k-smallcnn-afd")
    got = [_lr_at_middle_of_epoch(values, e) / values["lr"] for e in range(1, 11)]
    assert got == pytest.approx([1, 1, 1, 1, 1, 0.8, 0.4, 0.2, 0.1, 0.05])


def test_the_spec_numbers():
    c10, c100 = preset("cifar10-resnet18-afd"), preset("cifar100-wrn34-10-afd")
    for v in (c10, c100):
        assert (v["batch_size"], v["lr"], v["momentum"], v["weight_decay"]) == (128, 0.025, 0.9, 5e-4)
        assert (v["norm"], v["attack_steps"], v["attack_step_size"], v["ema_decay"]) == ("linf", 10, 0.007, 0.999)
        assert math.isclose(v["eps"], 8 / 255) and v["probe_n"] == 500
    assert c10["extra"] == {"alpha": 0.05, "beta": 0.25, "gamma": 25}
    assert c100["extra"] == {"alpha": 0.1, "beta": 1.0, "gamma": 50}
    mnist = preset("mnist5k-smallcnn-afd")
    assert (mnist["eps"], mnist["attack_step_size"], mnist["probe_n"], mnist["monitor_n"]) == (0.3, None, 200, 200)


def test_preset_returns_a_copy():
    preset("cifar10-resnet18-afd")["extra"]["alpha"] = 99.0
    assert preset("cifar10-resnet18-afd")["extra"]["alpha"] == 0.05


def test_unknown_preset_is_a_one_line_error_listing_the_names():
    with pytest.raises(FeatgapError) as err:
        preset("cifar10-afd")
    message = str(err.value)
    assert "\n" not in message and "unknown preset 'cifar10-afd'" in message
    assert all(name in message for name in PRESETS)


# ---------------------------------------------------------------- flags over presets over defaults
def test_explicit_flags_beat_the_preset():
    cfg = _config("--preset", "cifar10-resnet18-afd", "--epochs", "3", "--lr", "0.1", "--model", "preact_resnet18",
                  "--attack-step-size", "0.01", "--batch-size", "64", "--monitor-n", "50", "--probe-layers", "pool")
    assert (cfg.epochs, cfg.lr, cfg.model, cfg.attack_step_size, cfg.batch_size, cfg.monitor_n) == \
        (3, 0.1, "preact_resnet18", 0.01, 64, 50)
    assert cfg.probe_layers == ("pool",)
    # the rest is still the preset's
    assert cfg.lr_steps == preset("cifar10-resnet18-afd")["lr_steps"] and cfg.ema_decay == 0.999


def test_the_preset_beats_trainconfig_defaults_and_the_rest_stays_default():
    cfg = _config("--preset", "cifar100-wrn34-10-afd")
    values = preset("cifar100-wrn34-10-afd")
    assert cfg == TrainConfig(**values)
    assert cfg.lr == 0.025 != TrainConfig.lr and cfg.method == "afd" != TrainConfig.method
    assert (cfg.seed, cfg.device, cfg.data_root, cfg.download, cfg.val_fraction) == (0, "auto", "data", False, 0.0)


def test_flags_equal_to_the_trainconfig_default_still_override_the_preset():
    cfg = _config("--preset", "mnist5k-smallcnn-afd", "--monitor-n", "500", "--epochs", "10", "--lr", "0.1")
    assert (cfg.monitor_n, cfg.lr) == (500, 0.1)


def test_download_flag():
    assert _config().download is False
    assert _config("--download").download is True
    assert _config("--preset", "cifar10-resnet18-vaft", "--download").download is True


# The TrainConfig the code before presets built from these command lines (its argparse defaults were
# dataset mnist5k, model smallcnn, method standard, epochs 10, batch 128, lr 0.1, weight decay 5e-4,
# piecewise, linf, 10 steps, no ε warm-up, TRADES β 6, no EMA, seed 0, device auto, data root "data").
# TRADES' β was the field trades_beta then; it is the method option extra["beta"] now.
OLD_BEHAVIOUR = {
    "defaults": ([], TrainConfig(
        dataset="mnist5k", model="smallcnn", method="standard", epochs=10, batch_size=128, lr=0.1,
        weight_decay=5e-4, schedule="piecewise", eps=None, norm="linf", attack_steps=10, eps_warmup_epochs=0.0,
        ema_decay=None, seed=0, device="auto", data_root="data", download=False, init=None,
        val_fraction=0.0, monitor_n=500, probe_n=0, probe_layers=None)),
    "README pgd_at": (["--method", "pgd_at", "--epochs", "8", "--eps-warmup", "2", "--lr", "0.05"], TrainConfig(
        dataset="mnist5k", model="smallcnn", method="pgd_at", epochs=8, batch_size=128, lr=0.05,
        weight_decay=5e-4, schedule="piecewise", eps=None, norm="linf", attack_steps=10, eps_warmup_epochs=2.0,
        ema_decay=None, seed=0, device="auto", data_root="data", download=False, init=None,
        val_fraction=0.0, monitor_n=500, probe_n=0, probe_layers=None)),
    "everything": (["--dataset", "cifar10", "--model", "resnet18", "--method", "trades", "--eps", "0.03",
                    "--device", "cpu", "--seed", "3", "--data-root", "d", "--download", "--batch-size", "256",
                    "--epochs", "2", "--lr", "0.2", "--weight-decay", "1e-4", "--schedule", "cosine",
                    "--norm", "l2", "--attack-steps", "5", "--eps-warmup", "1", "--trades-beta", "3",
                    "--ema", "0.99", "--init", "runs/nat", "--val-fraction", "0.1", "--monitor-n", "100",
                    "--probe-n", "50", "--probe-layers", "stage1", "pool"], TrainConfig(
        dataset="cifar10", model="resnet18", method="trades", epochs=2, batch_size=256, lr=0.2,
        weight_decay=1e-4, schedule="cosine", eps=0.03, norm="l2", attack_steps=5, eps_warmup_epochs=1.0,
        extra={"beta": 3.0}, ema_decay=0.99, seed=3, device="cpu", data_root="d", download=True, init="runs/nat",
        val_fraction=0.1, monitor_n=100, probe_n=50, probe_layers=("stage1", "pool"))),
}


@pytest.mark.parametrize("case", list(OLD_BEHAVIOUR))
def test_without_a_preset_the_config_is_what_it_was_before(case):
    argv, expected = OLD_BEHAVIOUR[case]
    assert _config(*argv) == expected


def test_every_train_flag_with_a_trainconfig_default_quotes_it_in_its_help():
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    from featgap.cli import _TRAIN_FIELDS

    for action in train._actions:
        field = _TRAIN_FIELDS.get(action.dest)
        if field is None or action.dest == "download":
            continue
        assert action.default is None, f"--{action.dest} must default to None (not given)"
        if defaults[field] is not None:
            assert f"default {defaults[field]}" in action.help, action.dest


# ---------------------------------------------------------------- AFD options
def test_afd_flags_merge_over_the_presets_extra():
    cfg = _config("--preset", "cifar10-resnet18-afd", "--afd-beta", "0.5")
    assert cfg.extra == {"alpha": 0.05, "beta": 0.5, "gamma": 25}
    cfg = _config("--method", "afd", "--afd-alpha", "0.2", "--afd-gamma", "10")
    assert cfg.extra == {"alpha": 0.2, "gamma": 10.0}
    assert _config("--method", "afd").extra == {}


@pytest.mark.parametrize("argv", [["--method", "vaft"], ["--preset", "cifar10-resnet18-vaft"], [],
                                  ["--preset", "cifar10-resnet18-afd", "--method", "vaft"]])
def test_afd_flags_with_another_method_are_an_error(argv):
    with pytest.raises(FeatgapError, match="only to --method afd") as err:
        _config(*argv, "--afd-alpha", "0.1")
    assert "\n" not in str(err.value)


def test_another_method_drops_the_presets_afd_options():
    cfg = _config("--preset", "cifar10-resnet18-afd", "--method", "vaft")
    assert cfg.method == "vaft" and cfg.extra == {} and cfg.lr == 0.025
    assert _config("--preset", "cifar10-resnet18-afd", "--method", "afd").extra == preset("cifar10-resnet18-afd")["extra"]


# ---------------------------------------------------------------- the command
def test_unknown_preset_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'nope'" in err[0] and "cifar10-resnet18-afd" in err[0]
    assert not out.exists()


def test_afd_flag_with_vaft_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "mnist5k-smallcnn-vaft", "--afd-gamma", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--afd-gamma applies only to --method afd" in err[0]
    assert not out.exists()


def test_help_lists_the_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse may wrap lines at the names' hyphens
    assert all(name in text for name in PRESETS)


# ---------------------------------------------------------------- AFA presets
AFA_NAMES = ["cifar10-resnet18-afa", "cifar100-resnet18-afa", "cifar10-wrn34-10-afa", "mnist5k-smallcnn-afa"]


@pytest.mark.parametrize("name", AFA_NAMES[:3])
def test_afa_cifar_presets_follow_the_spec_schedule(name):
    """docs/methods/afa.md, presets: 100 epochs, batch 256, lr 0.1 cosine, 5 warm-up; ALF 25 epochs at 0.1."""
    cfg = TrainConfig(**preset(name)).resolved()
    assert (cfg.method, cfg.epochs, cfg.batch_size, cfg.lr, cfg.schedule, cfg.warmup_epochs, cfg.weight_decay) == (
        "afa", 100, 256, 0.1, "cosine", 5.0, 1e-4)
    assert cfg.eps == pytest.approx(8 / 255) and cfg.attack_steps == 10 and cfg.attack_step_size == pytest.approx(2 / 255)
    assert cfg.extra == {"temperature": 0.1, "anchors": "all", "attack_objective": "supcon", "proj_dim": 128,
                         "online_probe": True, "probe_lr_scale": 0.1}
    stage2 = cfg.finetune_config(init="x").resolved()
    assert (stage2.method, stage2.epochs, stage2.lr, stage2.schedule, stage2.warmup_epochs) == (
        "alf", 25, 0.1, "piecewise", 0.0)
    assert stage2.lr_steps == ((12.5, 0.1), (18.75, 0.1)) and stage2.init == "x" and stage2.extra == {}


def test_finetune_flags_merge_over_the_preset_and_a_new_method_drops_it():
    cfg = _config("--preset", "mnist5k-smallcnn-afa", "--finetune", "aff", "--finetune-epochs", "2")
    assert cfg.finetune == {**preset("mnist5k-smallcnn-afa")["finetune"], "method": "aff", "epochs": 2}
    cfg = _config("--preset", "mnist5k-smallcnn-afa", "--finetune", "aff", "--finetune-lr", "0.003",
                  "--finetune-eps-warmup", "2")  # the AFF recipe of benchmarks/afa_experiment.py
    assert cfg.finetune == {**preset("mnist5k-smallcnn-afa")["finetune"], "method": "aff", "lr": 0.003,
                            "eps_warmup_epochs": 2.0}
    cfg = _config("--preset", "mnist5k-smallcnn-afa", "--afa-temperature", "0.5", "--afa-anchors", "adversarial")
    assert cfg.extra == {"temperature": 0.5, "anchors": "adversarial"}
    cfg = _config("--preset", "mnist5k-smallcnn-afa", "--method", "pgd_at")
    assert cfg.finetune is None and cfg.extra == {}
    with pytest.raises(FeatgapError, match="--finetune-lr applies only to --method afa"):
        _config("--method", "trades", "--finetune-lr", "0.1")
    with pytest.raises(FeatgapError, match="--finetune-eps-warmup applies only to --method afa"):
        _config("--method", "pgd_at", "--finetune-eps-warmup", "2")
    assert main(["train", "--method", "afa", "--finetune-lr", "-1", "--out", "never"]) == 2
