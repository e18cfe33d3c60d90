"""App-only pictures made from the explain layer's arrays and numbers (report figures: `skinui.plots`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go

from skinui import plots
from skinui.vocabulary import BRANCH_LABELS

_LAYOUT: dict[str, Any] = {"template": "plotly_white", "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 320}



def overlay(image: np.ndarray, cam: np.ndarray | None, opacity: float = 0.5) -> np.ndarray:
    """Heatmap (jet colour map) blended over the RGB image; `cam` in [0, 1] at any resolution."""
    if cam is None:
        return image
    h, w = image.shape[:2]
    heat = cv2.resize(np.asarray(cam, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    alpha = float(np.clip(opacity, 0.0, 1.0))
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32), 0, 255))


def colour_bar(height: int, width: int = 28) -> np.ndarray:
    """The jet scale the overlays use, 1 (top, most weight) to 0 (bottom), labelled at both ends."""
    ramp = np.linspace(255, 0, height, dtype=np.float32)[:, None].repeat(width, 1).astype(np.uint8)
    bar = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)[..., ::-1].copy()
    for text, y in (("1", 14), ("0", height - 4)):
        cv2.putText(bar, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def cam_panel(image: np.ndarray, cam: np.ndarray | None, opacity: float = 0.5) -> np.ndarray:
    """The plain image, the Grad-CAM overlay and the colour scale side by side (one picture)."""
    shown = overlay(image, cam, opacity)
    gap = np.full((image.shape[0], 6, 3), 255, dtype=np.uint8)
    return np.hstack([image, gap, shown, gap, colour_bar(image.shape[0])])


def is_flat(cam: np.ndarray | None) -> bool:
    """A map with no region standing out (all zeros after pytorch-grad-cam's ReLU and scaling)."""
    return cam is not None and float(np.ptp(np.asarray(cam))) < 1e-6


def thumbnail(image: np.ndarray, side: int = 96) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def probability_figure(probabilities: Mapping[str, float], class_names: Mapping[str, str] | None = None,
                       title: str = "Calibrated class probabilities", predicted: str | None = None) -> go.Figure:
    fig = plots.probability_figure(probabilities, class_names, title=title, predicted=predicted)
    fig.update_layout(**{**_LAYOUT, "margin": {"l": 50, "r": 30, "t": 40, "b": 40}})
    return fig


def branch_figure(branch_probabilities: Mapping[str, Mapping[str, float]] | None,
                  branch_weights: Mapping[str, float] | None, prediction: str) -> go.Figure | None:
    """Each branch's probability of the predicted class next to its weight alpha (JIF / JI-ADF)."""
    if not branch_probabilities:
        return None
    branches = list(branch_probabilities)
    labels = [BRANCH_LABELS.get(b, b) for b in branches]
    fig = go.Figure()
    p = [float(branch_probabilities[b].get(prediction, 0.0)) for b in branches]
    # Branch outputs are the raw (uncalibrated) softmax of each head: the legend says so, because the
    # headline beside this chart is the calibrated probability and the two differ.
    fig.add_trace(go.Bar(x=labels, y=p, name=f"P({prediction}) of the branch, uncalibrated",
                         text=[f"{v:.0%}" for v in p]))
    if branch_weights:
        a = [float(branch_weights.get(b, 0.0)) for b in branches]
        fig.add_trace(go.Bar(x=labels, y=a, name="branch weight α", text=[f"{v:.2f}" for v in a]))
    fig.update_layout(title="Per-branch predictions (raw, before calibration) and weights", barmode="group",
                      **_LAYOUT)
    fig.update_yaxes(range=[0, 1.05])
    return fig


def relevance_figure(scores: Mapping[str, float], title: str, signed: bool = True,
                     raw: Mapping[str, float] | None = None, values_typed: Mapping[str, Any] | None = None) -> go.Figure:
    """One horizontal bar per clinical field; colour gives the sign (towards / against the class).

    `values_typed` puts each field's value in its label ("age = 67"); `raw` (probability units)
    goes on hover, so the absolute size of an effect is never hidden by the scaling."""
    items = sorted(scores.items(), key=lambda kv: abs(kv[1]))
    typed = values_typed or {}

    def label(k: str) -> str:
        v = typed.get(k)
        return k.replace("_", " ") + (f" = {v}" if v not in (None, "") else " = unknown" if values_typed else "")

    names = [label(k) for k, _ in items]
    values = [float(v) for _, v in items]
    colours = ["#2b8a3e" if v >= 0 else "#c92a2a" for v in values] if signed else None
    hover = [f"{label(k)}: scaled {float(v):+.2f}" + (f"; effect on P {float(raw[k]) * 100:+.1f} points" if raw and k in raw
                                                      else "") for k, v in items]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker_color=colours, hovertext=hover,
                           hoverinfo="text",
                           text=[f"{v:+.2f}" if signed else f"{v:.2f}" for v in values], textposition="auto"))
    layout = dict(_LAYOUT, height=max(260, 28 * len(values) + 110))
    fig.update_layout(title=title, xaxis_title="relevance (green: towards the class, red: against)"
                      if signed else "relevance", **layout)
    fig.update_xaxes(range=[-1.05 if signed and min(values, default=0) < 0 else 0, 1.05])
    fig.update_yaxes(tickmode="array", tickvals=names, ticktext=names)  # every field named, none skipped
    return fig


def reliability_figure(calibration: Mapping[str, Any] | None, confidence: float | None) -> go.Figure | None:
    """The card's reliability diagram, before and after temperature, with this case's confidence."""
    if not calibration or not calibration.get("bins"):
        return None
    fig = plots.reliability_figure(calibration["bins"], calibration.get("bins_calibrated"),
                                   calibration.get("ece"), calibration.get("ece_calibrated"),
                                   title="Reliability on the entry's test split")
    if confidence is not None:
        fig.add_vline(x=float(confidence), line_dash="dash", line_color="#e8590c",
                      annotation_text=f"this case: {confidence:.0%}", annotation_position="top left")
    fig.update_layout(**dict(_LAYOUT, height=380))
    return fig


def ablation_figure(rows: Sequence[Mapping[str, Any]], target: str) -> go.Figure:
    """This case's probability of `target` under every modality subset."""
    labels = [r["subset"] for r in rows]
    values = [float(r["probabilities"].get(target, 0.0)) for r in rows]
    fig = go.Figure(go.Bar(x=labels, y=values, text=[f"{v:.0%}" for v in values], textposition="auto"))
    fig.update_layout(title=f"P({target}) with each subset of inputs", xaxis_title="inputs given", **_LAYOUT)
    fig.update_yaxes(range=[0, 1.05])
    return fig


def alpha_by_class_figure(card: Mapping[str, Any] | None) -> go.Figure | None:
    """JI-ADF's mean branch weights alpha per true class (test split): which classes lean on which modality."""
    table = (card or {}).get("alpha_by_class")
    if not table:
        return None
    classes = list(table)
    fig = go.Figure()
    for branch in ("image", "joint", "metadata"):
        fig.add_trace(go.Bar(x=classes, y=[float(table[c].get(branch, 0.0)) for c in classes],
                             name=BRANCH_LABELS[branch], customdata=[table[c].get("n") for c in classes],
                             hovertemplate="%{x}: %{y:.2f} (n=%{customdata})<extra>" + branch + "</extra>"))
    fig.update_layout(title="Mean branch weight α per true class (test split)", barmode="stack",
                      **{**_LAYOUT, "height": 360})
    fig.update_yaxes(range=[0, 1.0], title="α")
    return fig


def what_if_figure(baseline: Mapping[str, float], changed: Mapping[str, float] | None, baseline_label: str,
                   changed_label: str = "", title: str = "What if?",
                   class_names: Mapping[str, str] | None = None) -> go.Figure:
    """The case's probabilities as analysed beside the what-if probabilities (grouped bars, one pair per class)."""
    codes = list(baseline)
    names = [(class_names or {}).get(k, k) for k in codes]
    fig = go.Figure()
    series = [(baseline_label, baseline, "#adb5bd")] + ([(changed_label, changed, "#e8590c")] if changed else [])
    for label, probs, colour in series:
        values = [float(probs.get(k, 0.0)) for k in codes]
        fig.add_trace(go.Bar(x=codes, y=values, name=label, marker_color=colour, text=[f"{v:.0%}" for v in values],
                             textposition="outside", cliponaxis=False, hoverinfo="text",
                             hovertext=[f"{n} ({k}), {label}: {v:.1%}" for n, k, v in zip(names, codes, values)]))
    fig.update_layout(title=title, barmode="group", yaxis_title="calibrated probability",
                      legend={"orientation": "h", "y": -0.15}, **{**_LAYOUT, "height": 360})
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%")
    return fig
