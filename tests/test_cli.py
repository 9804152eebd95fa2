"""The command line as a user meets it: bad input is one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featgap import runs
from featgap.cli import build_parser, main, train_config_from_args
from featgap.errors import FeatgapError


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FEATGAP_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "featgap", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


BAD_TRAIN = {
    "unknown dataset": (["--dataset", "imagenet-1k"], "unknown dataset 'imagenet-1k'"),
    "unknown model": (["--model", "vgg"], "unknown model 'vgg'"),
    "unknown method": (["--method", "magic"], "unknown method 'magic'"),
    "eps above 1": (["--eps", "8"], "--eps must be in [0, 1]"),
    "negative eps": (["--eps", "-0.1"], "--eps must be in [0, 1]"),
    "missing data folder": (["--dataset", "cifar10", "--data-root", "nowhere"], "featgap data download cifar10"),
    "vaft without init": (["--method", "vaft"], "--init"),
    "init not found": (["--method", "vaft", "--init", "no/such/run"], "not found"),
    "not a number": (["--epochs", "many"], "invalid int value"),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    extra, message = BAD_TRAIN[case]
    out = tmp_path / "run"
    result = _run("train", "--out", str(out), "--epochs", "1", *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and message in lines[0]
    assert not out.exists(), "no half-written run directory"


def test_checkpoint_of_another_architecture_is_refused(tmp_path, capsys):
    from featgap import models

    ckpt = tmp_path / "resnet.safetensors"
    runs.write_tensors(ckpt, models.create("resnet18", 10, 1).state_dict())
    out = tmp_path / "run"
    code = main(["train", "--method", "vaft", "--init", str(ckpt), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not fit" in err[0]
    assert not out.exists()


def test_eval_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a featgap run directory" in capsys.readouterr().err


def test_data_list_and_download_errors(tmp_path, capsys):
    assert main(["data", "list", "--data-root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "mnist5k" in listing and "bundled" in listing and "missing" in listing
    assert main(["data", "download", "mnist5k", "--data-root", str(tmp_path)]) == 2
    assert "nothing to download" in capsys.readouterr().err
    assert main(["data", "download", "nope"]) == 2


def test_every_subcommand_has_help():
    for sub in (["train"], ["eval"], ["probe"], ["report"], ["data"], ["data", "list"], ["data", "download"],
                ["demo"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*sub, "--help"])
        assert exit_info.value.code == 0


def _parsers(parser: argparse.ArgumentParser | None = None) -> list[argparse.ArgumentParser]:
    """``featgap``'s parser and every sub-command's, sub-sub-commands (``data list``) included."""
    parser = parser or build_parser()
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_flag_of_every_subcommand_has_one_line_of_help_with_its_default():
    parsers = _parsers()
    assert {p.prog for p in parsers} >= {"featgap train", "featgap eval", "featgap probe", "featgap report",
                                         "featgap data list", "featgap data download", "featgap demo"}
    wrong = []
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            if not action.help or "\n" in action.help:
                wrong.append(f"{name}: no help, or more than one line")
            elif action.option_strings and not action.required and "default" not in action.help:
                wrong.append(f"{name}: help states no default")
    assert not wrong, "\n".join(wrong)


def test_help_texts_render_cleanly():
    for parser in _parsers():
        text = parser.format_help()
        assert "%%" not in text and "EVALUATION.md" not in text, parser.prog
    probe = next(p for p in _parsers() if p.prog == "featgap probe").format_help()
    assert "95% CIs" in " ".join(probe.split())
    evaluation = next(p for p in _parsers() if p.prog == "featgap eval").format_help()
    assert "docs/evaluation.md" in " ".join(evaluation.split())


@pytest.mark.parametrize("argv", [["--help"], ["eval", "--help"], ["probe", "--help"], ["report", "--help"],
                                  ["data", "list", "--help"]])
def test_help_imports_no_torch(argv):
    """``featgap --help`` must be fast: torch alone takes seconds to import on a small machine."""
    code = ("import sys\nfrom featgap.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)" % (argv,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stderr.strip().splitlines()[-1] == "False", out.stderr
    assert "usage: featgap" in out.stdout


@pytest.mark.slow
def test_train_then_eval_from_the_command_line(tmp_path):
    out = tmp_path / "pgd"
    result = _run("train", "--method", "pgd_at", "--epochs", "1", "--attack-steps", "2", "--monitor-n", "50",
                  "--batch-size", "256", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "finished" in result.stdout
    result = _run("eval", str(out), "--n", "40", "--no-autoattack", "--pgd-steps", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout and "[ok] clean accuracy is reproducible and holds at ε→0" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == f"wrote {out / 'eval-n40-pgd3-no-autoattack.json'}"
    saved = json.loads((out / "eval-n40-pgd3-no-autoattack.json").read_text())
    assert saved["n"] == 40 and saved["autoattack"] is None
    bad = _run("eval", str(out), "--eps", "2", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- threat model: norm and ε

def test_train_eps_default_follows_the_norm():
    """--norm l2 without --eps trains at the dataset's L2 radius, not at the L∞ one."""
    from featgap.train.config import TrainConfig

    def resolved(*argv: str) -> TrainConfig:
        return train_config_from_args(build_parser(["train"]).parse_args(["train", "--out", "x", *argv])).resolved()

    assert resolved().eps == 0.3 and resolved("--norm", "l2").eps == 2.0  # mnist5k: L∞ 0.3, L2 2.0
    assert resolved("--norm", "l2", "--dataset", "cifar10").eps == 0.5
    assert resolved("--dataset", "cifar10").eps == pytest.approx(8 / 255)
    assert resolved("--norm", "l2", "--eps", "3.0").eps == 3.0  # an L2 radius may exceed 1
    with pytest.raises(FeatgapError, match=r"--eps must be in \[0, 1\]"):
        resolved("--eps", "3.0")
    with pytest.raises(FeatgapError, match="L2 radius"):
        resolved("--norm", "l2", "--eps", "-1")


@pytest.fixture(scope="module")
def l2_run(tmp_path_factory):
    """A tiny finished run trained with --norm l2 --eps 1.5 (standard training, 1 epoch: ~2 s)."""
    from featgap.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("l2") / "run"
    Trainer(TrainConfig(method="standard", epochs=1, norm="l2", eps=1.5, batch_size=500, monitor_n=0), out=out).fit()
    return out


def _eval_json(run: Path, *argv: str, capsys) -> dict:
    """Run featgap eval and read back the file its last line names ("wrote PATH" / "replaced PATH ...")."""
    assert main(["eval", str(run), "--n", "20", "--no-autoattack", "--pgd-steps", "2", *argv]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    verb, path = last.split(" ")[:2]
    assert verb in ("wrote", "replaced") and Path(path).parent == run and Path(path).is_file(), last
    return json.loads(Path(path).read_text())


def test_eval_keeps_every_evaluation_and_says_which_file_it_wrote(l2_run, capsys):
    """featgap eval --n 20 then --n 30: both files stay, each named by its settings; the same settings
    again replace only their own file, and the output says so."""
    from featgap import runs

    for old in runs.eval_files(l2_run):
        old.unlink()
    first = _eval_json(l2_run, capsys=capsys)
    assert main(["eval", str(l2_run), "--n", "30", "--no-autoattack", "--pgd-steps", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"wrote {l2_run / 'eval-n30-pgd2-no-autoattack.json'}"
    from featgap.evaluate import BASE_CHECKS

    for name in BASE_CHECKS:  # every sanity check is in the output, passed or flagged
        assert any(line.strip().startswith(("[ok] " + name, "[FLAG] " + name)) for line in out), name
    assert [p.name for p in runs.eval_files(l2_run)] == ["eval-n20-pgd2-no-autoattack.json",
                                                        "eval-n30-pgd2-no-autoattack.json"]
    assert runs.read_json(l2_run / "eval-n20-pgd2-no-autoattack.json") == first  # not overwritten
    assert runs.read_eval(l2_run)["n"] == 30 and runs.read_eval(l2_run, n=20)["n"] == 20
    assert main(["eval", str(l2_run), "--n", "20", "--no-autoattack", "--pgd-steps", "2"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        f"replaced {l2_run / 'eval-n20-pgd2-no-autoattack.json'} (an evaluation with the same settings)")
    assert len(runs.eval_files(l2_run)) == 2
    assert runs.eval_path(l2_run, n=20, aa_version="rand").name == "eval-n20-aa-rand.json"
    assert runs.eval_path(l2_run, n=20, norm="linf", eps=0.3, seed=1).name == "eval-n20-linf-eps0.3-seed1.json"


def test_eval_aa_version_flag(capsys):
    args = build_parser(["eval"]).parse_args(["eval", "run", "--aa-version", "rand"])
    assert args.aa_version == "rand"
    assert build_parser(["eval"]).parse_args(["eval", "run"]).aa_version == "standard"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "run", "--aa-version", "plus"])
    assert exit_info.value.code == 2 and "--aa-version" in capsys.readouterr().err


def test_eval_takes_the_runs_threat_model_unless_overridden(l2_run, capsys):
    saved = _eval_json(l2_run, capsys=capsys)
    assert (saved["norm"], saved["eps"]) == ("l2", 1.5)  # the run's own, from its config.json
    saved = _eval_json(l2_run, "--eps", "0.5", capsys=capsys)
    assert (saved["norm"], saved["eps"]) == ("l2", 0.5)
    saved = _eval_json(l2_run, "--norm", "linf", capsys=capsys)
    assert (saved["norm"], saved["eps"]) == ("linf", 0.3)  # another norm: the dataset's radius for it
    assert saved["pgd_step_size"] == pytest.approx(2.5 * 0.3 / 2)


def test_eval_pgd_step_size_flag(l2_run, capsys):
    saved = _eval_json(l2_run, "--pgd-step-size", "0.003", capsys=capsys)
    assert saved["pgd_step_size"] == 0.003
    for argv, message in [(["--pgd-step-size", "0"], "--pgd-step-size must be positive"),
                          (["--norm", "l3"], "unknown norm"), (["--norm", "linf", "--eps", "1.5"], "--eps must be in"),
                          (["--pgd-steps", "0"], "--pgd-steps must be at least 1")]:
        assert main(["eval", str(l2_run), "--n", "20", "--no-autoattack", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_eval_threat_model_of_a_run_without_a_norm():
    from featgap.cli import eval_threat_model

    assert eval_threat_model({"dataset": "mnist5k", "eps": 0.2}) == ("linf", 0.2)  # older config.json: L∞
    assert eval_threat_model({"dataset": "cifar10", "norm": "l2", "eps": 0.5}, norm="linf")[1] == pytest.approx(8 / 255)


def test_probe_takes_the_runs_threat_model(l2_run, tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "probe.csv"
    assert main(["probe", str(l2_run), "--n", "10", "--steps", "1", "--n-boot", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert set(pd.read_csv(out)["eps"]) == {1.5}  # the run's L2 radius, above the L∞ bound of 1
