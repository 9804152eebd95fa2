"""Tests of the feature-gap DataFrames: ``gap_table``, ``summarize`` (bootstrap CIs), ``gap_vs_eps``,
``to_csv``, the column glossary, the training trajectory and ``featgap probe`` — each against an
independent NumPy/SciPy computation or a hand-computable case."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from torch import nn

from featgap import FeatgapError
from featgap.cli import main
from featgap.models import create
from featgap.probes import (COLUMNS, GAP_METRICS, adversarial_examples, bootstrap_mean_ci, gap_table, gap_vs_eps,
                            load_trajectory, summarize, to_csv)

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_model() -> nn.Module:
    """f(x) = W·flatten(x): layer "0" is the input itself, layer "1" the logits (both hand-computable)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
    return model


def test_gap_table_hand_computed_on_a_plain_module():
    model = linear_model()
    x = torch.tensor([[[0.9, 0.1], [0.0, 0.0]], [[0.2, 0.6], [0.0, 0.0]]])  # logits (0.9, 0.1), (0.2, 0.6)
    x_adv = torch.tensor([[[0.9, 0.1], [0.3, 0.4]], [[0.7, 0.6], [0.0, 0.0]]])
    y = torch.tensor([0, 1])
    t = gap_table(model, x, y, x_adv, layers=["0", "1"])
    assert isinstance(t, pd.DataFrame) and len(t) == 4 and list(t["layer"]) == ["0", "0", "1", "1"]
    assert list(t.columns) == ["sample", "label", "layer", "l2", "linf", "cosine", "rel_l2", "nat_pred", "adv_pred",
                               "nat_correct", "adv_correct", "outcome"]
    assert set(t.columns) <= set(COLUMNS)
    inp = t[t["layer"] == "0"]
    np.testing.assert_allclose(inp["l2"], [0.5, 0.5], rtol=1e-6)          # ‖(0,0,.3,.4)‖ = 0.5, ‖(.5,0,0,0)‖
    np.testing.assert_allclose(inp["linf"], [0.4, 0.5], rtol=1e-6)
    np.testing.assert_allclose(inp["rel_l2"], [0.5 / np.hypot(0.9, 0.1), 0.5 / np.hypot(0.2, 0.6)], rtol=1e-6)
    logit = t[t["layer"] == "1"]
    np.testing.assert_allclose(logit["l2"], [0.0, 0.5], atol=1e-7)       # sample 0: logits unchanged
    np.testing.assert_allclose(logit["cosine"], [0.0, 1 - (0.7 * 0.2 + 0.6 * 0.6) / (np.hypot(.7, .6) * np.hypot(.2, .6))],
                               atol=1e-6)
    assert list(logit["nat_pred"]) == [0, 1] and list(logit["adv_pred"]) == [0, 0]
    assert list(logit["outcome"]) == ["robust", "flipped"]
    assert list(t["sample"]) == [0, 1, 0, 1] and list(t["label"]) == [0, 1, 0, 1]


def test_outcome_wrong_for_misclassified_natural_input():
    model = linear_model()
    x = torch.tensor([[[0.1, 0.9], [0.0, 0.0]]])
    t = gap_table(model, x, torch.tensor([0]), x.clone(), layers=["1"])
    assert list(t["outcome"]) == ["wrong"] and not t["nat_correct"].iloc[0] and not t["adv_correct"].iloc[0]


def test_gap_table_matches_numpy_on_a_featgap_model():
    torch.manual_seed(1)
    model = create("smallcnn", 10, 1).eval()
    x = torch.rand(12, 1, 28, 28)
    y = torch.randint(0, 10, (12,))
    x_adv = adversarial_examples(model, x, y, eps=0.2, steps=3)
    assert (x_adv - x).abs().max() <= 0.2 + 1e-6
    t = gap_table(model, x, y, x_adv)
    assert list(dict.fromkeys(t["layer"])) == ["stage1", "stage2", "pool"]
    with torch.no_grad():
        s2n = model.stage2(model.stage1(model.normalize(x))).mean(dim=(2, 3)).numpy().astype(np.float64)
        s2a = model.stage2(model.stage1(model.normalize(x_adv))).mean(dim=(2, 3)).numpy().astype(np.float64)
        pred_adv = model(x_adv).argmax(1).numpy()
    rows = t[t["layer"] == "stage2"]
    diff = s2n - s2a
    np.testing.assert_allclose(rows["l2"], np.linalg.norm(diff, axis=1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(rows["linf"], np.abs(diff).max(1), rtol=1e-4, atol=1e-6)
    cos = np.array([scipy_cosine(a, b) for a, b in zip(s2n, s2a)])
    np.testing.assert_allclose(rows["cosine"], cos, rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(rows["adv_pred"], pred_adv)


def scipy_cosine(a: np.ndarray, b: np.ndarray) -> float:
    import scipy.spatial.distance

    return float(scipy.spatial.distance.cosine(a, b))


def test_gap_table_attacks_itself_reproducibly_and_checks_input():
    torch.manual_seed(2)
    model = create("smallcnn", 10, 1).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    a = gap_table(model, x, y, eps=0.1, steps=2, layers="pool", seed=3)
    b = gap_table(model, x, y, eps=0.1, steps=2, layers="pool", seed=3)
    np.testing.assert_array_equal(a["l2"], b["l2"])
    assert (a["l2"] > 0).all()
    assert a.equals(gap_table(model, x, y, adversarial_examples(model, x, y, eps=0.1, steps=2, seed=3), layers="pool"))
    with pytest.raises(FeatgapError, match="give x_adv, or eps"):
        gap_table(model, x, y)
    with pytest.raises(FeatgapError, match="labels"):
        gap_table(model, x, y[:3], x)
    with pytest.raises(FeatgapError, match="shape"):
        gap_table(model, x, y, x[:3])
    with pytest.raises(FeatgapError, match=r"eps must be in \[0, 1\]"):
        gap_table(model, x, y, eps=8)


def test_bootstrap_against_scipy_and_hand_cases():
    v = np.random.default_rng(0).exponential(size=300)
    mean, lo, hi = bootstrap_mean_ci(v, n_boot=4000, rng=np.random.default_rng(1))
    ref = scipy.stats.bootstrap((v,), np.mean, n_resamples=4000, method="percentile",
                                random_state=np.random.default_rng(2)).confidence_interval
    assert mean == pytest.approx(v.mean())
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.02)
    # the normal-theory interval mean ± 1.96·s/√n is close for n = 300
    se = v.std(ddof=1) / np.sqrt(len(v))
    assert lo == pytest.approx(v.mean() - 1.96 * se, abs=0.03) and hi == pytest.approx(v.mean() + 1.96 * se, abs=0.03)
    assert bootstrap_mean_ci(np.full(10, 2.5)) == (2.5, 2.5, 2.5)  # no spread, no uncertainty
    m, lo, hi = bootstrap_mean_ci(np.array([1.0, 3.0]), n_boot=0)
    assert m == 2.0 and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(FeatgapError):
        bootstrap_mean_ci(np.array([]))


def test_summarize_groups_like_numpy():
    rng = np.random.default_rng(0)
    t = pd.DataFrame({"layer": ["b", "a", "b", "a", "b"] * 20, "outcome": ["robust", "flipped"] * 50,
                      **{m: rng.normal(size=100) for m in GAP_METRICS}})
    s = summarize(t, by=("layer", "outcome"), seed=0)
    assert isinstance(s, pd.DataFrame)
    assert list(s.columns) == ["layer", "outcome", "n", *(f"{m}_{k}" for m in GAP_METRICS for k in ("mean", "lo", "hi"))]
    assert list(zip(s["layer"], s["outcome"]))[:2] == [("b", "robust"), ("a", "flipped")]  # first-appearance order
    arrays = {k: t[k].to_numpy() for k in t.columns}  # the check runs on plain NumPy arrays
    for r in s.to_dict("records"):
        mask = (arrays["layer"] == r["layer"]) & (arrays["outcome"] == r["outcome"])
        assert r["n"] == mask.sum()
        for m in GAP_METRICS:
            assert r[f"{m}_mean"] == pytest.approx(arrays[m][mask].mean())
            assert r[f"{m}_lo"] <= r[f"{m}_mean"] <= r[f"{m}_hi"]
    again = summarize(t, by=("layer", "outcome"), seed=0)
    np.testing.assert_array_equal(again["l2_lo"], s["l2_lo"])
    with pytest.raises(FeatgapError, match="cannot group by"):
        summarize(t, by="nope")
    with pytest.raises(FeatgapError, match="no metric"):
        summarize(t, metrics=["nope"])


def test_to_csv_format_and_atomic_write(tmp_path):
    t = pd.DataFrame({"name": ["a", "b"], "x": [1.5, float("nan")], "ok": [True, False], "n": [3, 4],
                      "f": np.array([1 / 3, 2e-7], dtype=np.float32)})
    text = to_csv(t, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == text == "name,x,ok,n,f\na,1.5,1,3,0.333333\nb,nan,0,4,2e-07\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left behind
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back.columns) == list(t.columns) and back["x"].isna().tolist() == [False, True]
    assert to_csv(t, digits=2).splitlines()[1] == "a,1.5,1,3,0.33"


def test_every_column_is_documented():
    assert all(isinstance(v, str) and v for v in COLUMNS.values())
    for name in ("sample", "label", "layer", "eps", "outcome", *GAP_METRICS, "mean", "lo", "hi", "n"):
        assert name in COLUMNS


def test_gap_vs_eps_zero_radius_and_growth():
    torch.manual_seed(3)
    model = create("smallcnn", 10, 1).eval()
    x, y = torch.rand(10, 1, 28, 28), torch.randint(0, 10, (10,))
    t = gap_vs_eps(model, x, y, eps=[0.0, 0.05, 0.3], layers=["pool"], steps=5)
    assert t.columns[0] == "eps" and len(t) == 30 and list(t.index) == list(range(30))
    assert (t[t["eps"] == 0.0]["l2"] == 0).all()
    s = summarize(t, by="eps", metrics=["l2"], n_boot=0)
    assert s["l2_mean"][0] == 0 < s["l2_mean"][1] < s["l2_mean"][2]
    # given adversarial examples for one radius: that radius uses them, the others are attacked
    x_adv = adversarial_examples(model, x, y, eps=0.3, steps=5)
    given = gap_vs_eps(model, x, y, {0.3: x_adv}, eps=[0.0, 0.05, 0.3], layers=["pool"], steps=5)
    pd.testing.assert_frame_equal(given, t)
    with pytest.raises(FeatgapError):
        gap_vs_eps(model, x, y, eps=[])


@pytest.mark.slow
def test_trajectory_callback_and_loader(tmp_path):
    from featgap.train import TrainConfig, Trainer

    cfg = TrainConfig(epochs=2, monitor_n=0, probe_n=40, probe_layers=("stage2", "pool"), lr=0.05)
    Trainer(cfg, out=tmp_path / "a").fit()
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["probe"]["n"] == 40 for r in records)
    t = load_trajectory([tmp_path / "a", tmp_path / "a"], names=["first", "second"])
    assert set(t["run"]) == {"first", "second"} and set(t["epoch"]) == {1, 2}
    assert set(t["layer"]) == {"stage2", "pool"} and set(t["metric"]) == set(GAP_METRICS)
    assert isinstance(t, pd.DataFrame) and set(t.columns) <= set(COLUMNS)
    one = t[(t["run"] == "first") & (t["epoch"] == 2) & (t["layer"] == "pool") & (t["metric"] == "l2")
            & (t["outcome"] == "all")]
    assert len(one) == 1 and one["n"].iloc[0] == 40 and one["lo"].iloc[0] <= one["mean"].iloc[0] <= one["hi"].iloc[0]
    # the recorded mean is the mean over the outcome groups, weighted by their sizes
    groups = t[(t["run"] == "first") & (t["epoch"] == 2) & (t["layer"] == "pool") & (t["metric"] == "l2")
               & (t["outcome"] != "all")]
    assert (groups["mean"] * groups["n"]).sum() / groups["n"].sum() == pytest.approx(one["mean"].iloc[0])
    # resume configs store the layers as a list: reading them back gives the same config
    assert TrainConfig.from_dict(json.loads((tmp_path / "a" / "config.json").read_text())["config"]).probe_layers == \
        ("stage2", "pool")
    with pytest.raises(FeatgapError, match="unknown layer"):
        Trainer(TrainConfig(epochs=1, probe_n=10, probe_layers=("nope",)), out=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_load_trajectory_errors(tmp_path):
    with pytest.raises(FeatgapError, match="not a featgap run"):
        load_trajectory(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FeatgapError, match="--probe-n"):
        load_trajectory(tmp_path)


@pytest.mark.slow
def test_cli_probe_writes_csv_and_summary(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--monitor-n", "0", "--probe-n", "20", "--probe-layers", "pool",
                 "--out", str(run)]) == 0
    trajectory = load_trajectory(run)
    assert set(trajectory["layer"]) == {"pool"} and set(trajectory["n"][trajectory["outcome"] == "all"]) == {20}
    assert main(["probe", str(run), "--n", "30", "--eps", "0", "0.2", "--steps", "3", "--layers", "stage2", "pool",
                 "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "l2 [95% CI]" in out and "stage2" in out and "wrote 120 rows" in out
    lines = (run / "probe.csv").read_text().splitlines()
    assert lines[0] == "eps,sample,label,layer,l2,linf,cosine,rel_l2,nat_pred,adv_pred,nat_correct,adv_correct,outcome"
    assert len(lines) == 121
    # every test image of the subset is one stratified sample: 3 per class
    labels = [int(line.split(",")[2]) for line in lines[1:31]]
    assert sorted(labels) == sorted(list(range(10)) * 3)
    # bad input: one line, exit 2, nothing written
    (run / "probe.csv").unlink()
    for argv, msg in [(["--eps", "2"], "--eps must be in"), (["--n", "0"], "--n must be"),
                      (["--layers", "nope"], "unknown layer"), (["--norm", "l3"], "unknown norm")]:
        assert main(["probe", str(run), *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert not (run / "probe.csv").exists()
    assert main(["probe", str(tmp_path / "missing")]) == 2
    assert "not a featgap run" in capsys.readouterr().err


def test_cli_probe_help_explains_every_metric(capsys):
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    out = capsys.readouterr().out
    for metric in (*GAP_METRICS, "outcome", "nat_correct", "lo, hi"):
        assert f"\n  {metric} " in out, metric
