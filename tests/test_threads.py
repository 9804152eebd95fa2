"""featgap.threads: where the thread count comes from (flag > FEATGAP_THREADS > OMP_NUM_THREADS > measured),
the measured rule, and the setting recorded in a run's config.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from featgap import threads
from featgap.errors import FeatgapError


@pytest.fixture
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "_applied", None)
    yield
    torch.set_num_threads(before)


def test_parse_takes_a_positive_count_or_auto():
    assert threads.parse(None) is None and threads.parse("auto") is None and threads.parse(" AUTO ") is None
    assert threads.parse("3") == 3 and threads.parse(2) == 2
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(FeatgapError) as err:
            threads.parse(bad)
        assert "\n" not in str(err.value) and "--threads" in str(err.value)


def test_the_measured_rule_leaves_the_busy_cores_to_their_owners():
    assert threads.auto_threads(2, 0.0) == 2  # idle 2-core machine: both cores
    assert threads.auto_threads(2, 1.0) == 1  # one core busy with another job: one thread
    assert threads.auto_threads(2, 7.0) == 1  # never fewer than one
    assert threads.auto_threads(8, 2.4) == 6 and threads.auto_threads(8, 2.6) == 5
    assert threads.others_running() >= 0 and threads.cores() >= 1


def test_precedence_flag_then_featgap_threads_then_omp_then_auto(keep_threads, monkeypatch):
    monkeypatch.setattr(threads, "others_running", lambda *a, **k: 0.0)
    monkeypatch.setattr(threads, "cores", lambda: 4)
    assert threads.choose() == {"threads": 4, "source": "auto", "others_running": 0.0, "cores": 4}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose()["source"] == "OMP_NUM_THREADS" and threads.choose()["threads"] is None
    monkeypatch.setenv(threads.ENV, "2")
    assert threads.choose()["threads"] == 2 and threads.choose()["source"] == threads.ENV
    assert threads.choose("1") == {"threads": 1, "source": "--threads", "cores": 4}
    assert threads.choose("auto")["source"] == threads.ENV  # "auto" on the flag: not given
    monkeypatch.setenv(threads.ENV, "auto")
    assert threads.choose()["source"] == "auto"  # FEATGAP_THREADS=auto beats OMP_NUM_THREADS
    monkeypatch.setenv(threads.ENV, "zero")
    with pytest.raises(FeatgapError, match="FEATGAP_THREADS"):
        threads.choose()


def test_apply_sets_torch_and_record_says_where_it_came_from(keep_threads):
    assert threads.record()["source"] == "not set by featgap"
    choice = threads.apply(1)
    assert torch.get_num_threads() == 1 and choice["threads"] == 1
    rec = threads.record()
    assert rec["threads"] == 1 and rec["source"] == "--threads"
    torch.set_num_threads(2)
    assert threads.record()["source"].startswith("changed after featgap set it")


def test_import_featgap_threads_imports_no_torch():
    code = "import sys, featgap.threads\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_bad_threads_flag_is_one_line_exit_2(tmp_path, capsys):
    from featgap import cli

    assert cli.main(["train", "--method", "standard", "--epochs", "1", "--out", str(tmp_path / "r"),
                     "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads" in err[0]
    assert not (tmp_path / "r").exists()


def test_train_records_the_thread_setting_in_config_json(keep_threads, tmp_path, capsys):
    from featgap import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--method", "standard", "--epochs", "1", "--monitor-n", "0", "--batch-size", "500",
                     "--device", "cpu", "--out", str(out), "--threads", "1"]) == 0
    recorded = json.loads((out / "config.json").read_text())["environment"]["threads"]
    assert recorded["threads"] == 1 and recorded["source"] == "--threads" and recorded["cores"] >= 1
