"""Training keeps a one-line record per finished run: it stays in a notebook when the bars vanish."""

from __future__ import annotations

from pathlib import Path

import pytest

from featgap.train.trainer import finished_line


def test_the_finished_line_says_what_how_long_how_well_and_where():
    line = finished_line("pgd_at", 6, 31.4, {"monitor_clean_acc": 95.0, "monitor_pgd_acc": 70.25, "gap_l2": 3.5},
                         Path("runs/x"))
    assert line == "pgd_at finished 6 epochs in 31 s: monitor clean 95.0%, PGD 70.2%, gap L2 3.500 → runs/x"
    assert finished_line("standard", 1, 2.0, None, None) == "standard finished 1 epochs in 2 s → (not saved)"


@pytest.mark.slow
def test_fit_prints_the_line_once_when_the_run_finishes(tmp_path, capsys):
    from featgap.train import TrainConfig, Trainer

    Trainer(TrainConfig(method="standard", epochs=1, monitor_n=20, batch_size=256), out=tmp_path / "run").fit()
    lines = [l for l in capsys.readouterr().out.splitlines() if " finished " in l]
    assert len(lines) == 1 and lines[0].startswith("standard finished 1 epochs in ") and str(tmp_path / "run") in lines[0]
    assert "monitor clean" in lines[0]
