"""featgap.plots.embedding: the traces hold exactly the Embedding's coordinates, pairs and predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from featgap.errors import FeatgapError
from featgap.plots.embedding import PALETTE, TRACES, embedding_map, embedding_maps, embedding_points
from featgap.probes import embed, embed_sequence

N = 12


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    f_nat = rng.normal(size=(N, 6)).astype(np.float32)
    f_adv = f_nat + rng.normal(scale=0.5, size=(N, 6)).astype(np.float32)
    labels = np.arange(N) % 10
    preds = pd.DataFrame({"sample": np.arange(N), "layer": "pool", "label": labels, "nat_pred": labels,
                          "adv_pred": (labels + 1) % 10, "outcome": "flipped"})
    return f_nat, f_adv, preds


def test_points_are_the_embeddings_coordinates_in_sample_order(features):
    f_nat, f_adv, preds = features
    emb = embed(f_nat, f_adv, method="pca", cache=False)
    table = emb.table.sample(frac=1.0, random_state=1)  # row order must not matter
    points = embedding_points(table, preds)
    np.testing.assert_allclose(points["natural"]["x"], emb.nat[:, 0], rtol=1e-6)
    np.testing.assert_allclose(points["natural"]["y"], emb.nat[:, 1], rtol=1e-6)
    np.testing.assert_allclose(points["adversarial"]["x"], emb.adv[:, 0], rtol=1e-6)
    np.testing.assert_allclose(points["adversarial"]["y"], emb.adv[:, 1], rtol=1e-6)
    assert points["natural"]["customdata"] == list(range(N)) == points["adversarial"]["customdata"]
    # one segment per pair: natural point, its adversarial twin, None
    xs, ys = points["pairs"]["x"], points["pairs"]["y"]
    assert len(xs) == 3 * N and xs[2::3] == [None] * N and ys[2::3] == [None] * N
    np.testing.assert_allclose(xs[0::3], emb.nat[:, 0], rtol=1e-6)
    np.testing.assert_allclose(ys[1::3], emb.adv[:, 1], rtol=1e-6)
    # colour by class, hover with both predictions
    assert points["natural"]["marker"]["color"] == [PALETTE[k % 10] for k in range(N)]
    assert "class 3" in points["natural"]["text"][3]
    hover = points["natural"]["text"][3]
    assert "natural → 3" in hover and "adversarial → 4 (flipped)" in hover


def test_embedding_map_has_circles_crosses_and_one_pair_trace(features):
    f_nat, f_adv, preds = features
    emb = embed(f_nat, f_adv, method="pca", cache=False)
    fig = embedding_map(emb.table, preds, title="t")
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data[:3]] == ["natural → adversarial", "natural", "adversarial"]
    assert fig.data[1].marker.symbol == "circle" and fig.data[2].marker.symbol == "x"
    assert fig.data[0].mode == "lines" and fig.data[0].hoverinfo == "skip"
    assert list(fig.data[1].x) == pytest.approx(emb.nat[:, 0].tolist(), rel=1e-6)
    assert [t.name for t in fig.data[3:]] == [f"class {k}" for k in range(10)]
    # without predictions: grey points, hover names the sample only
    plain = embedding_map(emb.table)
    assert set(plain.data[1].marker.color) == {"#444444"} and plain.data[1].text[0].startswith("<b>sample 0</b>")
    assert len(plain.data) == 3


def test_embedding_maps_side_by_side_share_one_frame(features):
    f_nat, f_adv, preds = features
    a, b = embed_sequence([(f_nat, f_adv), (2 * f_nat, 2 * f_adv)], method="pca", cache=False)
    fig = embedding_maps([a.table, b.table], [preds, preds], names=["before", "after"])
    assert len(fig.data) == 2 * len(TRACES) + 10
    assert list(fig.data[4].x) == pytest.approx(b.nat[:, 0].tolist(), rel=1e-6)
    assert fig.data[4].xaxis == "x2" and fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"
    assert [a.text for a in fig.layout.annotations] == ["before", "after"]
    assert fig.data[3].showlegend is False  # the second map's entries are not repeated


@pytest.mark.parametrize("bad, message", [
    (lambda t: t.drop(columns="dim2"), "lacks column"),
    (lambda t: t.iloc[:0], "empty"),
    (lambda t: t.to_numpy(), "must be a DataFrame"),
])
def test_bad_tables_are_one_line_errors(features, bad, message):
    f_nat, f_adv, _ = features
    table = embed(f_nat, f_adv, method="pca", cache=False).table
    with pytest.raises(FeatgapError, match=message) as err:
        embedding_map(bad(table))
    assert "\n" not in str(err.value)


def test_mismatched_names_and_missing_tables_are_one_line_errors(features):
    f_nat, f_adv, _ = features
    table = embed(f_nat, f_adv, method="pca", cache=False).table
    with pytest.raises(FeatgapError, match="as many"):
        embedding_maps([table, table], names=["one"])
    with pytest.raises(FeatgapError, match="at least one"):
        embedding_maps([])
    with pytest.raises(FeatgapError, match="'sample' column"):
        embedding_map(table, pd.DataFrame({"label": [1]}))
