"""featgap.plots.sample: the one-sample figures show the probe's numbers — images and the amplified
perturbation with its factor in the title, top-k probabilities, attribution heatmaps, component
norms with summarize's intervals — and bad input is a one-line error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from featgap.errors import FeatgapError
from featgap.plots.sample import (attribution_maps, component_norms, sample_gap, sample_images, sample_overview,
                                  topk_bars)
from featgap.probes import compare_attributions, gap_table, summarize


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    return text


@pytest.fixture(scope="module")
def model():
    from featgap.models import create

    torch.manual_seed(0)
    return create("smallcnn", 10, 1).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 28, 28, generator=g)
    x_adv = (x + 0.2 * torch.rand(x.shape, generator=g) - 0.1).clamp(0, 1)
    return x, torch.tensor([1, 2, 3]), x_adv


@pytest.fixture(scope="module")
def components_df() -> pd.DataFrame:
    """component_norms-shaped rows: 5 samples, natural then adversarial."""
    rng = np.random.default_rng(0)
    n = 5
    return pd.DataFrame({"sample": np.tile(np.arange(n), 2), "label": np.tile(np.arange(n), 2),
                         "input": np.array(["nat"] * n + ["adv"] * n, dtype=object),
                         "f1_norm": rng.random(2 * n) + 1, "f2_norm": rng.random(2 * n),
                         "cos_f1_f2": rng.random(2 * n) * 2 - 1, "y_conf": np.zeros(2 * n, dtype=int),
                         "conf_hit": rng.random(2 * n) > 0.5})


# ----------------------------------------------------------------------------- images

def test_grayscale_images_and_the_amplified_perturbation(batch):
    x, _, x_adv = batch
    fig = sample_images(x[0], x_adv[0])
    assert [type(t) for t in fig.data] == [go.Heatmap] * 3
    np.testing.assert_allclose(fig.data[0].z, x[0, 0].numpy())
    np.testing.assert_allclose(fig.data[2].z, x_adv[0, 0].numpy())
    delta = (x_adv[0, 0] - x[0, 0]).numpy()
    biggest = np.abs(delta).max()
    a = 0.5 / biggest
    np.testing.assert_allclose(fig.data[1].z, np.clip(0.5 + a * delta, 0, 1), rtol=1e-5, atol=1e-6)
    title = fig.layout.annotations[1].text
    assert f"×{a:.3g}" in title and f"{biggest:.3f}" in title


def test_given_amplification_and_rgb_images():
    x = torch.rand(3, 8, 8)
    x_adv = (x + 0.05).clamp(0, 1)
    fig = sample_images(x, x_adv, amplify=4.0)
    assert [type(t) for t in fig.data] == [go.Image] * 3
    assert np.asarray(fig.data[0].z).shape == (8, 8, 3)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), np.round(x.permute(1, 2, 0).numpy() * 255))
    shown = np.clip(0.5 + 4.0 * (x_adv - x).permute(1, 2, 0).numpy(), 0, 1)
    np.testing.assert_allclose(np.asarray(fig.data[1].z), np.round(shown * 255), atol=1)
    assert "×4" in fig.layout.annotations[1].text


def test_uint8_images_scale_and_bad_shapes_fail():
    x = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    assert np.allclose(sample_images(x, x).data[0].z, 1.0)
    with pytest.raises(FeatgapError) as err:
        sample_images(torch.rand(2, 4, 4), torch.rand(2, 4, 4))
    assert "(C, H, W)" in _one_line(err)
    with pytest.raises(FeatgapError) as err:
        sample_images(torch.rand(1, 4, 4), torch.rand(1, 5, 5))
    assert "one shape" in _one_line(err)


# ----------------------------------------------------------------------------- top-k

def test_topk_bars_show_both_lists_probabilities():
    p_nat = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.05])
    p_adv = torch.tensor([0.1, 0.05, 0.05, 0.2, 0.6])
    fig = topk_bars(p_nat, p_adv, k=2, class_names=list("abcde"))
    nat, adv = fig.data
    assert list(nat.x) == ["e", "a", "b", "d"]  # union of {a, b} and {e, d}, most likely first
    np.testing.assert_allclose(nat.y, [0.05, 0.5, 0.3, 0.05])
    np.testing.assert_allclose(adv.y, [0.6, 0.1, 0.05, 0.2])
    assert fig.layout.xaxis.type == "category"
    with pytest.raises(FeatgapError) as err:
        topk_bars(p_nat, p_adv[:3])
    assert "one length" in _one_line(err)
    with pytest.raises(FeatgapError):
        topk_bars(p_nat, p_adv, k=0)


# ----------------------------------------------------------------------------- attributions

def test_attribution_maps_are_the_comparisons_heatmaps(model, batch):
    x, y, x_adv = batch
    cmp = compare_attributions(model, x, y, x_adv, methods=("saliency", "input_x_gradient"))
    fig = attribution_maps(cmp, "input_x_gradient", index=1)
    nat, adv = fig.data
    np.testing.assert_allclose(nat.z, cmp.heatmap("input_x_gradient", "natural")[1].numpy())
    np.testing.assert_allclose(adv.z, cmp.heatmap("input_x_gradient", "adversarial")[1].numpy())
    assert nat.zmax == adv.zmax == pytest.approx(max(np.max(nat.z), np.max(adv.z)))
    row = cmp.table[cmp.table["method"] == "input_x_gradient"].iloc[1]
    assert f"{row['topk_overlap']:.2f}" in fig.layout.annotations[1].text
    assert f"class {int(y[1])}" in fig.layout.annotations[0].text
    with pytest.raises(FeatgapError) as err:
        attribution_maps(cmp, "integrated_gradients")
    assert "integrated_gradients" in _one_line(err)
    with pytest.raises(FeatgapError) as err:
        attribution_maps(cmp, index=3)
    assert "index 3" in _one_line(err)
    with pytest.raises(FeatgapError):
        attribution_maps(cmp.table)


# ----------------------------------------------------------------------------- gap of one sample

def test_sample_gap_bars_are_the_samples_rows(model, batch):
    x, y, x_adv = batch
    t = gap_table(model, x, y, x_adv)
    fig = sample_gap(t, sample=2, metric="rel_l2")
    rows = t[t["sample"] == 2]
    assert list(fig.data[0].x) == rows["layer"].tolist()
    np.testing.assert_allclose(fig.data[0].y, rows["rel_l2"])
    assert rows["outcome"].iloc[0] in fig.layout.title.text
    with pytest.raises(FeatgapError) as err:
        sample_gap(t)
    assert "sample=" in _one_line(err)
    with pytest.raises(FeatgapError) as err:
        sample_gap(t.drop(columns=["outcome"]), sample=0)
    assert "outcome" in _one_line(err)


# ----------------------------------------------------------------------------- components

def test_component_norms_bars_are_summarize_means_with_intervals(components_df):
    fig = component_norms(components_df)
    s = summarize(components_df, by="input", metrics=["f1_norm", "f2_norm", "cos_f1_f2", "conf_hit"])
    nat_norms, adv_norms, nat_cos, adv_cos = fig.data
    for trace, kind in ((nat_norms, "nat"), (adv_norms, "adv")):
        row = s[s["input"] == kind].iloc[0]
        np.testing.assert_allclose(trace.y, [row["f1_norm_mean"], row["f2_norm_mean"]])
        np.testing.assert_allclose(np.asarray(trace.y) + np.asarray(trace.error_y.array),
                                   [row["f1_norm_hi"], row["f2_norm_hi"]])
        np.testing.assert_allclose(np.asarray(trace.y) - np.asarray(trace.error_y.arrayminus),
                                   [row["f1_norm_lo"], row["f2_norm_lo"]])
    for trace, kind in ((nat_cos, "nat"), (adv_cos, "adv")):
        np.testing.assert_allclose(trace.y, s.loc[s["input"] == kind, "cos_f1_f2_mean"])
    rate = components_df.loc[components_df["input"] == "adv", "conf_hit"].mean()
    assert f"adv {rate:.0%}" in fig.layout.title.text


def test_component_norms_of_one_sample_are_its_values(components_df):
    fig = component_norms(components_df, sample=3)
    one = components_df[components_df["sample"] == 3]
    nat = one[one["input"] == "nat"].iloc[0]
    np.testing.assert_allclose(fig.data[0].y, [nat["f1_norm"], nat["f2_norm"]])
    np.testing.assert_allclose(fig.data[2].y, [nat["cos_f1_f2"]])
    with pytest.raises(FeatgapError) as err:
        component_norms(components_df.drop(columns=["cos_f1_f2"]))
    assert "cos_f1_f2" in _one_line(err)
    with pytest.raises(FeatgapError) as err:
        component_norms(components_df, sample=42)
    assert "42" in _one_line(err)


# ----------------------------------------------------------------------------- overview

def test_overview_traces_in_order_with_and_without_components(model, batch, components_df):
    x, y, x_adv = batch
    x, y, x_adv = x[:1], y[:1], x_adv[:1]
    t = gap_table(model, x, y, x_adv)
    cmp = compare_attributions(model, x, y, x_adv, methods="saliency")
    probs = torch.softmax(torch.randn(2, 10), 1)
    plain = sample_overview(x[0], x_adv[0], probs[0], probs[1], cmp, t)
    assert [type(tr).__name__ for tr in plain.data] == ["Heatmap"] * 5 + ["Bar"] * 3
    np.testing.assert_allclose(plain.data[7].y, t["l2"])
    one = components_df[components_df["sample"] == 0]
    full = sample_overview(x[0], x_adv[0], probs[0], probs[1], cmp, t, one, heads={"nat": (1, 2), "adv": (3, 4)})
    assert len(full.data) == 12
    np.testing.assert_allclose(full.data[8].y, one.loc[one["input"] == "nat", ["f1_norm", "f2_norm"]].to_numpy()[0])
    assert any("f2 head → 4" in (a.text or "") for a in full.layout.annotations)
