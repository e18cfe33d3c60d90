"""The shared plotly figures draw the numbers they are given."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from skinui import plots
from skinui.calibration import reliability_bins


def test_confusion_matrix_normalises_rows_and_keeps_counts():
    fig = plots.confusion_matrix_figure([[3, 1], [0, 4]], ["a", "b"])
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z, [[0.75, 0.25], [0.0, 1.0]])
    assert np.asarray(fig.data[0].text).tolist() == [[3, 1], [0, 4]]
    assert plots.confusion_matrix_figure([[0, 0], [0, 2]], ["a", "b"]).data[0].z[0][0] == 0  # empty row: no NaN


def test_roc_reliability_ablation_and_probability_figures():
    roc = plots.roc_figure({"a": {"fpr": [0, 0.5, 1], "tpr": [0, 1, 1]}}, {"a": 0.75})
    assert isinstance(roc, go.Figure) and "AUC 0.750" in roc.data[0].name and len(roc.data) == 2

    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.65, 0.35]])
    bins = reliability_bins(probs, np.array([0, 1, 0]))
    rel = plots.reliability_figure(bins, bins, ece=0.3, ece_calibrated=0.1)
    assert len(rel.data) == 3 and len(rel.data[1].x) == 2  # diagonal + two series, empty bins dropped
    assert "ECE 0.100" in rel.data[2].name

    abl = plots.ablation_figure({"D": {"balanced_accuracy": 0.5, "macro_auc": 0.8}, "D+M": {"balanced_accuracy": 0.6, "macro_auc": None}})
    assert list(abl.data[0].x) == ["D", "D+M"] and list(abl.data[1].y) == [0.8, None]

    bars = plots.probability_figure({"nv": 0.7, "mel": 0.3}, {"mel": "melanoma"}, predicted="mel")
    # short codes on the axis (long names squeeze the bars on a narrow screen), the name on hover
    assert list(bars.data[0].y) == ["mel", "nv"] and "melanoma (mel): 30.0%" in list(bars.data[0].hovertext)
    assert list(bars.data[0].marker.color) == ["#c0392b", "#2c7fb8"]  # the decided class stands out
    assert bars.data[0].textposition == "outside" and bars.layout.xaxis.range[1] > 1  # value labels not clipped
    assert "<div" in bars.to_html(include_plotlyjs=False, full_html=False)


def test_training_curves_figure():
    fig = plots.training_curves_figure([{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}])
    assert len(fig.data) == 1 and list(fig.data[0].y) == [1.0, 0.5]


def test_reliability_points_show_their_case_counts():
    bins = [{"lower": 0.0, "upper": 0.5, "count": 3, "confidence": 0.4, "accuracy": 0.3},
            {"lower": 0.5, "upper": 1.0, "count": 300, "confidence": 0.8, "accuracy": 0.79}]
    fig = plots.reliability_figure(bins)
    pts = fig.data[1]
    assert list(pts.text) == ["n=3", "n=300"] and pts.marker.size[0] < pts.marker.size[1]
