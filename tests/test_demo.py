"""The main job, end to end, checked against the acceptance criteria of the foundation issue."""

from __future__ import annotations

import pytest

from featgap.demo import DEFAULT_RUNS, DEMO_RUNS, demo_runs, format_table, run_demo


@pytest.mark.slow
def test_demo_trains_evaluates_and_pgd_at_is_robust(tmp_path, capsys):
    results = run_demo(out=tmp_path / "demo", n=100, names=tuple(DEMO_RUNS))  # AFA too
    std, adv = results["standard"], results["pgd_at"]
    assert adv.pgd >= std.pgd + 40.0, (std.pgd, adv.pgd)
    for r in (std, adv):
        assert r.autoattack is not None and r.autoattack <= r.pgd <= r.clean
        assert r.n == 100
    assert adv.feature_gap["l2"] < std.feature_gap["l2"]  # robust features move less under attack
    assert set(results) == {"standard", "pgd_at", "vaft", "afd", "afa"}
    for name in ("vaft", "afd"):  # fine-tuning the natural model adversarially makes it robust
        assert results[name].pgd >= std.pgd + 20.0, (name, results[name].pgd)
        assert results[name].autoattack <= results[name].pgd <= results[name].clean
    afa = results["afa"]  # AFA + ALF: its robustness is judged by AutoAttack (CE-PGD can be masked)
    assert afa.autoattack <= afa.pgd <= afa.clean and afa.clean >= 80.0
    assert afa.autoattack >= std.autoattack + 10.0, afa.autoattack
    assert (tmp_path / "demo" / "afa-pretrain" / "summary.json").exists()  # the two stages, side by side
    out = capsys.readouterr().out
    assert "n = 100" in out and "gap L2" in out and format_table(results) in out
    assert "AFD components" in out and "cos(f1,f2)" in out and "PGD-20" in out
    page = tmp_path / "demo" / "report.html"  # the demo ends with its standalone report, measured on its subset
    assert f"report: {page} (" in out and page.stat().st_size <= 10e6
    text = page.read_text()
    assert "not measured" not in text and text.count('class="figure-spec"') >= 10
    # a second call reuses the finished runs instead of retraining; by default without AFA
    again = run_demo(out=tmp_path / "demo", n=20)
    assert "reusing the finished run" in capsys.readouterr().out and tuple(again) == DEFAULT_RUNS


def test_demo_runs_are_checked_and_fine_tunings_bring_their_start():
    from featgap.errors import FeatgapError

    assert DEFAULT_RUNS == ("standard", "pgd_at", "afd")
    assert demo_runs(["afd"]) == ("standard", "afd")
    assert demo_runs(["afa", "pgd_at"]) == ("pgd_at", "afa")
    with pytest.raises(FeatgapError, match="unknown demo run 'mart'"):
        demo_runs(["mart"])
