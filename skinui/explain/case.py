"""`explain_case`: everything the app shows about one case, from one encode pass.

Cost on a trimodal case: both backbones forward once (the `Encoded` the caller passes in), each
image branch once more for its Grad-CAM with a backward that stops at the target layer, then only
`model.head` calls (metadata relevance: 50 IG steps + one ablation per field, batched; 7 modality
subsets, batched).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skinui.explain.ablation import modality_ablation
from skinui.explain.attribution import RELEVANCE_METHODS, relevance
from skinui.explain.cam import gradcams
from skinui.explain.core import normalise_signed, resolve_target
from skinui.inference import Encoded


@dataclass
class CaseExplanation:
    entry: str
    classes: list[str]
    probabilities: dict[str, float]  # calibrated
    prediction: str  # by the card's decision rule
    confidence: float
    target: str  # the class the explanations are for
    branch_probabilities: dict[str, dict[str, float]] | None
    branch_weights: dict[str, float] | None
    cams: dict[str, np.ndarray] = field(default_factory=dict)  # image modality -> [H, W] in [0, 1]
    relevance: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> field -> score in [-1, 1]
    relevance_raw: dict[str, dict[str, float]] = field(default_factory=dict)  # the same, unscaled (probability units)
    ablation: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per part
    warnings: list[str] = field(default_factory=list)  # the prediction's warnings on this case
    prediction_set: list[str] | None = None  # conformal set (skinui.trust.conformal)
    set_coverage: float | None = None
    set_mode: str | None = None
    unusual: dict[str, dict[str, float]] | None = None  # image modality -> out-of-distribution score
    uncertainty: dict[str, dict[str, float]] | None = None  # measure -> {value, rank}
    tasks: dict[str, dict[str, float]] | None = None  # further tasks (Derm7pt's criteria) -> class probabilities


def explain_case(enc: Encoded, target: int | str | None = None,
                 methods: tuple[str, ...] | None = None) -> CaseExplanation:
    """Prediction + Grad-CAM on every image + metadata relevance (each method) + modality ablation."""
    clock = {"start": time.perf_counter()}
    prediction = enc.predictions(tta=True)[0]  # the app's one case: the flipped views are worth it
    t = resolve_target(enc, target)
    clock["predict"] = time.perf_counter()
    cams = gradcams(enc, t)
    clock["gradcam"] = time.perf_counter()
    raw = {}
    if enc.entry.encoder is not None and "metadata" in enc.entry.model.modalities:
        raw = {m: relevance(enc, m, t, scaled=False) for m in (methods or tuple(RELEVANCE_METHODS.names()))}
    rel = {m: normalise_signed(scores) for m, scores in raw.items()}
    clock["relevance"] = time.perf_counter()
    ablation = modality_ablation(enc, t)
    clock["ablation"] = time.perf_counter()
    order = list(clock)
    seconds = {k: clock[k] - clock[prev] for prev, k in zip(order, order[1:])}
    seconds["total"] = clock["ablation"] - clock["start"]
    return CaseExplanation(enc.entry.name, enc.classes, prediction.probabilities, prediction.prediction,
                           prediction.confidence, enc.classes[t], prediction.branch_probabilities,
                           prediction.branch_weights, cams, rel, raw, ablation, seconds, prediction.warnings,
                           prediction.prediction_set, prediction.set_coverage, prediction.set_mode, prediction.unusual,
                           prediction.uncertainty, prediction.tasks)
