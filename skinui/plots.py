"""Plotly figures shared by the evaluation reports and the app.

Every function takes plain numbers (the outputs of `skinui.metrics`, `skinui.calibration` and
the explain layer) and returns a `plotly.graph_objects.Figure`; nothing here computes a metric.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


def confusion_matrix_figure(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], normalize: bool = True, title: str = "Confusion matrix"
) -> go.Figure:
    """Rows = true class, columns = predicted; colour = row-normalised rate (recall), text = counts."""
    counts = np.asarray(matrix, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    shown = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalize else counts
    fig = go.Figure(
        go.Heatmap(
            z=shown,
            x=list(classes),
            y=list(classes),
            text=counts.astype(int),
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalize else None,
            colorbar={"title": "recall" if normalize else "cases"},
            hovertemplate="true %{y}, predicted %{x}: %{text} cases<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", **_LAYOUT)
    fig.update_yaxes(autorange="reversed")
    return fig


def roc_figure(
    curves: Mapping[str, Mapping[str, Sequence[float]]], aucs: Mapping[str, float | None] | None = None, title: str = "ROC per class"
) -> go.Figure:
    """One-vs-rest ROC curves (`skinui.metrics.roc_curves`), AUC in the legend when given."""
    fig = go.Figure()
    for label, curve in curves.items():
        auc = (aucs or {}).get(label)
        name = f"{label} (AUC {auc:.3f})" if auc is not None else label
        fig.add_trace(go.Scatter(x=list(curve["fpr"]), y=list(curve["tpr"]), mode="lines", name=name))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="chance"))
    fig.update_layout(title=title, xaxis_title="1 - specificity", yaxis_title="sensitivity", **_LAYOUT)
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return fig


def _bin_points(bins: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float], list[int]]:
    filled = [b for b in bins if b["count"]]
    return [b["confidence"] for b in filled], [b["accuracy"] for b in filled], [b["count"] for b in filled]


def reliability_figure(
    bins: Sequence[Mapping[str, Any]],
    bins_calibrated: Sequence[Mapping[str, Any]] | None = None,
    ece: float | None = None,
    ece_calibrated: float | None = None,
    title: str = "Reliability diagram",
) -> go.Figure:
    """Accuracy against confidence per bin (`skinui.calibration.reliability_bins`); the diagonal is perfect."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="perfect"))
    series = [("before temperature", bins, ece)]
    if bins_calibrated is not None:
        series.append(("after temperature", bins_calibrated, ece_calibrated))
    for name, b, e in series:
        x, y, n = _bin_points(b)
        label = f"{name} (ECE {e:.3f})" if e is not None else name
        top = max(n, default=1)
        fig.add_trace(
            go.Scatter(
                # marker area follows the bin's case count, which is also written beside it: a point
                # made of 3 cases is not evidence the way one of 300 is
                x=x, y=y, mode="lines+markers+text", name=label, customdata=n,
                marker={"size": [6 + 14 * (c / top) ** 0.5 for c in n]},
                text=[f"n={c}" for c in n], textposition="top center", textfont={"size": 9},
                hovertemplate="confidence %{x:.2f}, accuracy %{y:.2f}, %{customdata} cases<extra></extra>",
            )
        )
    fig.update_layout(title=title, xaxis_title="confidence", yaxis_title="accuracy", **_LAYOUT)
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return fig


def ablation_figure(ablation: Mapping[str, Mapping[str, float | None]], title: str = "Modality ablation") -> go.Figure:
    """Grouped bars per modality subset ("D+M", ...): balanced accuracy and macro AUC."""
    subsets = list(ablation)
    fig = go.Figure()
    for key, name in (("balanced_accuracy", "balanced accuracy"), ("macro_auc", "macro AUC")):
        values = [ablation[s].get(key) for s in subsets]
        fig.add_trace(go.Bar(x=subsets, y=values, name=name, text=[f"{v:.3f}" if v is not None else "" for v in values]))
    fig.update_layout(title=title, barmode="group", xaxis_title="modalities given", yaxis_title="score", **_LAYOUT)
    fig.update_yaxes(range=[0, 1])
    return fig


def probability_figure(
    probabilities: Mapping[str, float], class_names: Mapping[str, str] | None = None, title: str = "Class probabilities",
    predicted: str | None = None,
) -> go.Figure:
    """Horizontal bars, most probable class on top. Axis labels are the short class codes (long names
    squeeze the bars on a narrow screen); the plain-language name is on hover. `predicted` is drawn
    in a second colour, so a decision that is not the top bar is visible at a glance."""
    items = sorted(probabilities.items(), key=lambda kv: kv[1])
    codes = [k for k, _ in items]
    values = [float(v) for _, v in items]
    names = [(class_names or {}).get(k, k) for k in codes]
    colours = ["#c0392b" if k == predicted else "#2c7fb8" for k in codes]
    fig = go.Figure(go.Bar(x=values, y=codes, orientation="h", marker_color=colours, text=[f"{v:.1%}" for v in values],
                           textposition="outside", cliponaxis=False, hovertext=[f"{n} ({k}): {v:.1%}" for n, k, v in
                                                                                zip(names, codes, values)],
                           hoverinfo="text"))
    fig.update_layout(title=title, xaxis_title="probability", **_LAYOUT)
    fig.update_layout(margin={"l": 60, "r": 30, "t": 50, "b": 50})
    fig.update_xaxes(range=[0, 1.12], tickformat=".0%")  # room for the value labels beyond the longest bar
    return fig


def training_curves_figure(history: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("train_loss", "val_balanced_accuracy", "val_macro_f1")) -> go.Figure:
    """Per-epoch curves from a run's metrics log (JSON lines rows)."""
    fig = go.Figure()
    epochs = [row.get("epoch") for row in history]
    for key in keys:
        if any(key in row for row in history):
            fig.add_trace(go.Scatter(x=epochs, y=[row.get(key) for row in history], mode="lines+markers", name=key))
    fig.update_layout(title="Training", xaxis_title="epoch", **_LAYOUT)
    return fig


def interval_figure(rows: Sequence[Mapping[str, Any]], metric_label: str = "balanced accuracy",
                    title: str = "Test-split scores with 95% bootstrap intervals") -> go.Figure:
    """One point per entry (`label`, `estimate`, `lo`, `hi`, optional `highlight`), horizontal error bars.

    Overlapping bars do not by themselves mean "indistinguishable": the paired interval of the
    difference decides that (the figure's caller says so in words).
    """
    rows = [r for r in rows if r.get("estimate") is not None]
    labels = [str(r["label"]) for r in rows]
    est = np.array([float(r["estimate"]) for r in rows])
    lo = np.array([float(r["lo"]) for r in rows])
    hi = np.array([float(r["hi"]) for r in rows])
    colours = ["#c0392b" if r.get("highlight") else "#2c7fb8" for r in rows]
    fig = go.Figure(go.Scatter(
        x=est, y=labels, mode="markers", marker={"color": colours, "size": 9},
        error_x={"type": "data", "symmetric": False, "array": hi - est, "arrayminus": est - lo},
        customdata=np.stack([lo, hi], axis=1) if rows else None,
        hovertemplate="%{y}: %{x:.3f} (95% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title=metric_label, height=max(260, 28 * len(rows) + 110), **_LAYOUT)
    fig.update_layout(margin={"l": 200, "r": 20, "t": 50, "b": 50})
    fig.update_yaxes(autorange="reversed")
    return fig


def probability_matrix_figure(rows: Sequence[Mapping[str, Any]], title: str = "Each entry's probabilities on this case") -> go.Figure:
    """Entries (rows) x classes (columns), colour and text = calibrated probability; each row's
    decided class is boxed in the hover text. Rows: `entry`, `probabilities`, `prediction`."""
    classes = list(rows[0]["probabilities"]) if rows else []
    z = [[float(r["probabilities"].get(c, 0.0)) for c in classes] for r in rows]
    hover = [[f"{r['entry']}: P({c}) = {r['probabilities'].get(c, 0.0):.1%}"
              + (" (its decision)" if c == r["prediction"] else "") for c in classes] for r in rows]
    fig = go.Figure(go.Heatmap(z=z, x=classes, y=[str(r["entry"]) for r in rows], zmin=0, zmax=1, colorscale="Blues",
                               text=[[f"{v:.0%}" for v in row] for row in z], texttemplate="%{text}",
                               hovertext=hover, hoverinfo="text", colorbar={"title": "P"}))
    fig.update_layout(title=title, height=max(260, 26 * len(rows) + 120), **_LAYOUT)
    fig.update_layout(margin={"l": 220, "r": 20, "t": 50, "b": 40})
    fig.update_yaxes(autorange="reversed")
    return fig
