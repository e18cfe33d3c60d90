"""`explain_case`: everything the app shows about one case, from one encode pass.

Cost on a trimodal case: both backbones forward once (prediction), each image branch once more
for its Grad-CAM with a backward that stops at the target layer, then only `model.head` calls
(metadata relevance: 50 IG steps + one ablation per field, batched; 7 modality subsets, batched).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skinui.cases import IMAGE_MODALITIES, Case
from skinui.explain.ablation import ablation_encoded
from skinui.explain.attribution import RELEVANCE_METHODS, relevance_encoded
from skinui.explain.cam import gradcam_encoded
from skinui.explain.core import Encoded, branch_summary, decided, encode_case, resolve_target


@dataclass
class CaseExplanation:
    entry: str
    classes: list[str]
    probabilities: dict[str, float]  # calibrated
    prediction: str
    confidence: float
    target: str  # the class the explanations are for
    branch_probabilities: dict[str, dict[str, float]] | None
    branch_weights: dict[str, float] | None
    cams: dict[str, np.ndarray] = field(default_factory=dict)  # image modality -> [H, W] in [0, 1]
    relevance: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> field -> signed score
    ablation: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per part
    warnings: list[str] = field(default_factory=list)  # the entry's notes on this case

def prediction_summary(enc: Encoded) -> dict[str, Any]:
    """Calibrated probabilities, top class, confidence, branch outputs of an encoded case."""
    classes = enc.classes
    probs = enc.probabilities()
    k = int(decided(np.asarray(probs)[None], enc.entry)[0])
    branch_probs, weights = branch_summary(enc)
    return {"probabilities": dict(zip(classes, map(float, probs))), "prediction": classes[k],
            "confidence": float(probs[k]), "branch_probabilities": branch_probs, "branch_weights": weights}


def explain_case(entry: Any, case: Case, target: int | str | None = None,
                 methods: tuple[str, ...] | None = None) -> CaseExplanation:
    """Prediction + Grad-CAM on every image + metadata relevance (each method) + modality ablation."""
    clock = {"start": time.perf_counter()}
    enc = encode_case(entry, case)
    clock["predict"] = time.perf_counter()
    summary = prediction_summary(enc)
    t = resolve_target(entry, target, enc.logits)
    cams = {}
    for m in IMAGE_MODALITIES:
        heat = gradcam_encoded(enc, m, t)
        if heat is not None:
            cams[m] = heat
    clock["gradcam"] = time.perf_counter()
    relevance = {}
    if getattr(entry, "encoder", None) is not None and "metadata" in entry.model.modalities:
        relevance = {m: relevance_encoded(enc, m, t) for m in (methods or tuple(RELEVANCE_METHODS.names()))}
    clock["relevance"] = time.perf_counter()
    ablation = ablation_encoded(enc)
    clock["ablation"] = time.perf_counter()
    order = list(clock)
    seconds = {k: clock[k] - clock[prev] for prev, k in zip(order, order[1:])}
    seconds["total"] = clock["ablation"] - clock["start"]
    return CaseExplanation(entry.name, enc.classes, summary["probabilities"], summary["prediction"],
                           summary["confidence"], enc.classes[t], summary["branch_probabilities"],
                           summary["branch_weights"], cams, relevance, ablation, seconds, enc.notes)
