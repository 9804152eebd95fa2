"""A method declares its options once (featgap.methods.Option); the CLI flags, the defaults
config.json records, and the checks of presets and user values all come from that declaration."""

from __future__ import annotations

import pytest

from featgap import methods
from featgap.cli import build_parser, main, method_flags, train_config_from_args
from featgap.errors import FeatgapError
from featgap.methods import METHODS, AttackSettings, Method, Option
from featgap.methods.afa import AFA, AFATrades
from featgap.methods.afd import AFD
from featgap.methods.trades import TRADES
from featgap.train.config import TrainConfig, differing_settings


def _config(*argv: str) -> TrainConfig:
    """The TrainConfig ``featgap train ARGV --out x`` would train with (nothing is trained)."""
    return train_config_from_args(build_parser(["train"]).parse_args(["train", *argv, "--out", "x"]))


class Toy(Method):
    """A throw-away method with one option, registered only inside the tests that use it."""

    name = "toy"
    options = (Option("weight", float, 0.5, "toy weight of nothing at all"),)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "toy", Toy)
    return Toy


# ---------------------------------------------------------------- a new method needs no CLI change
def test_a_new_methods_option_is_a_train_flag_without_touching_the_cli(toy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--toy-weight WEIGHT toy weight of nothing at all (--method toy; default 0.5)" in text
    assert ", mart, toy." in text.split("--method NAME training method", 1)[1].split("--epochs", 1)[0]
    cfg = _config("--method", "toy", "--toy-weight", "2")
    assert cfg.extra == {"weight": 2.0} and cfg.resolved().extra == {"weight": 2.0}
    assert _config("--method", "toy").resolved().extra == {"weight": 0.5}  # the default, recorded
    with pytest.raises(FeatgapError, match="--toy-weight applies only to --method toy; this run's method is pgd_at"):
        _config("--method", "pgd_at", "--toy-weight", "2")


def test_the_registry_without_the_toy_has_no_toy_flag(capsys):
    assert "--toy-weight" not in method_flags()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--toy-weight" not in capsys.readouterr().out


def test_one_flag_must_mean_one_option(monkeypatch):
    class Clash(Method):
        name = "clash"
        options = (Option("gain", float, 1.0, "clashes with TRADES' β", flag="--trades-beta"),)

    monkeypatch.setitem(methods.METHODS, "clash", Clash)
    with pytest.raises(TypeError, match="--trades-beta is option beta of trades"):
        method_flags()


# ---------------------------------------------------------------- today's flags, generated
def test_todays_flag_names_set_the_same_options():
    assert _config("--method", "trades", "--trades-beta", "3").extra == {"beta": 3.0}
    assert _config("--method", "afd", "--afd-alpha", "0.1", "--afd-beta", "0.5", "--afd-gamma", "10").extra == {
        "alpha": 0.1, "beta": 0.5, "gamma": 10.0}
    cfg = _config("--method", "afa_trades", "--trades-beta", "2", "--afa-lambda", "0.5", "--afa-attack", "ce",
                  "--afa-temperature", "0.2", "--afa-anchors", "adversarial")
    assert cfg.extra == {"beta": 2.0, "lam": 0.5, "attack_objective": "ce", "temperature": 0.2,
                         "anchors": "adversarial"}
    assert _config("--method", "afa", "--afa-online-probe", "false", "--afa-proj-dim", "64").extra == {
        "online_probe": False, "proj_dim": 64}


def test_an_option_shared_by_two_methods_is_one_flag():
    flags = method_flags()
    assert flags["--afa-temperature"][1] == ("afa", "afa_trades")
    assert flags["--trades-beta"][1] == ("trades", "afa_trades")
    assert flags["--afa-lambda"][1] == ("afa_trades",) and flags["--afd-beta"][1] == ("afd",)
    train = next(a for a in build_parser(["train"])._actions if a.dest == "command").choices["train"]
    strings = [s for a in train._actions for s in a.option_strings]
    assert strings.count("--afa-temperature") == 1 and strings.count("--trades-beta") == 1
    with pytest.raises(FeatgapError, match="--trades-beta applies only to --method trades or afa_trades"):
        _config("--method", "pgd_at", "--trades-beta", "3")
    with pytest.raises(FeatgapError, match="--afa-lambda applies only to --method afa_trades"):
        _config("--method", "afa", "--afa-lambda", "2")


def test_bad_flag_values_are_usage_errors(capsys):
    for argv in (["--afa-anchors", "clean"], ["--afa-online-probe", "maybe"], ["--trades-beta", "big"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser(["train"]).parse_args(["train", "--out", "x", *argv])
        assert exit_info.value.code == 2
    assert "expected true or false" in capsys.readouterr().err


# ---------------------------------------------------------------- declarations → defaults, checks
def test_defaults_and_choices_derive_from_the_declaration():
    assert TRADES.defaults == {"beta": 6.0} and AFD.defaults == {"alpha": 0.05, "beta": 0.25, "gamma": 25.0,
                                                           "update": "summed"}
    assert AFA.defaults == {"temperature": 0.1, "anchors": "all", "attack_objective": "supcon", "proj_dim": 128,
                            "online_probe": True, "probe_lr_scale": 0.1}
    assert AFATrades.defaults == {"lam": 1.0, "temperature": 0.1, "anchors": "all", "attack_objective": "supcon",
                                  "proj_dim": 128, "beta": 6.0}
    assert AFA.choices == {"anchors": ("all", "adversarial"), "attack_objective": ("supcon", "ce")}
    assert TrainConfig(method="trades").resolved().extra == {"beta": 6.0}
    assert TrainConfig(method="pgd_at").resolved().extra == {}


def test_values_are_checked_against_their_declared_type():
    with pytest.raises(FeatgapError, match="method afd: alpha must be a float; got 'big'"):
        AFD(AttackSettings(), alpha="big")
    with pytest.raises(FeatgapError, match="method afa: online_probe must be a bool"):
        AFA(AttackSettings(), online_probe="yes")
    with pytest.raises(FeatgapError, match="proj_dim must be a int"):
        TrainConfig(method="afa", extra={"proj_dim": 1.5}).resolved()
    assert AFD(AttackSettings(), gamma=25).gamma == 25.0  # an int is a fine float (presets write 25)
    with pytest.raises(FeatgapError, match="has no option beta"):
        TrainConfig(method="pgd_at", extra={"beta": 6.0}).resolved()


def test_every_method_has_a_teaching_docstring_that_states_its_options():
    """One style for all (as torchattacks documents each attack): paper, loss, options with defaults."""
    for name, cls in METHODS.items():
        doc = cls.__doc__ or ""
        assert all(part in doc for part in ("Paper:", "Loss:", "Options")), name
        for option in cls.options:
            assert f"{option.name} (" in doc or f"{option.name} ({option.type.__name__})" in doc, (name, option.name)
            shown = str(option.default).lower() if isinstance(option.default, bool) else str(option.default)
            assert shown in doc.lower(), (name, option.name, shown)


# ---------------------------------------------------------------- TRADES' β, old config.json files
def _old_record(method: str, **changes: object) -> dict:
    """A (resolved) config.json "config" entry as featgap wrote it before β became an option."""
    record = TrainConfig(method=method).resolved().as_dict()
    record.pop("extra")
    return {**record, "trades_beta": 6.0, "extra": {}, **changes}


def test_old_configs_with_trades_beta_still_load():
    assert TrainConfig.from_dict(_old_record("trades", trades_beta=3.0)).extra == {"beta": 3.0}
    assert TrainConfig.from_dict(_old_record("afa_trades", trades_beta=2.0, extra={"lam": 1.0})).extra == {
        "beta": 2.0, "lam": 1.0}
    assert TrainConfig.from_dict(_old_record("pgd_at", trades_beta=3.0)).extra == {}  # pgd_at ignored it
    afd = TrainConfig.from_dict(_old_record("afd", extra={"alpha": 0.05, "beta": 0.25, "gamma": 25.0}))
    assert afd.extra["beta"] == 0.25  # AFD's own β is another option


def test_a_finished_old_run_still_counts_as_the_same_settings():
    """What ``featgap train`` (stage 1 reuse) and benchmarks/afa_experiment.py's cache compare."""
    assert differing_settings(_old_record("trades"), TrainConfig(method="trades").resolved()) == []
    assert differing_settings(_old_record("trades", trades_beta=3.0), TrainConfig(method="trades").resolved()) == [
        "extra"]
    old_afa_trades = _old_record("afa_trades", extra={"lam": 1.0, "temperature": 0.1, "anchors": "all",
                                                      "attack_objective": "supcon", "proj_dim": 128})
    assert differing_settings(old_afa_trades, TrainConfig(method="afa_trades").resolved()) == []
    assert differing_settings(_old_record("pgd_at"), TrainConfig(method="pgd_at").resolved()) == []
