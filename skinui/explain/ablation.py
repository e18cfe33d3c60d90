"""Modality ablation of one case: every non-empty subset of the entry's modalities at once.

All subsets go through `model.head` as one batch over the cached features, with the presence mask
switching modalities off (the model then uses its learned missing embeddings, exactly as when a
case lacks that input), so no backbone runs again.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

import torch

from skinui.cases import SHORT, Case
from skinui.explain.core import Encoded, calibrated, decided, encode_case, head_batch


def subsets(modalities: list[str]) -> list[tuple[str, ...]]:
    """Non-empty subsets, largest first (7 for trimodal, 3 for bimodal)."""
    return [c for k in range(len(modalities), 0, -1) for c in combinations(modalities, k)]


def subset_label(subset: tuple[str, ...] | list[str]) -> str:
    return "+".join(SHORT[m] for m in subset)


def ablation_encoded(enc: Encoded) -> list[dict[str, Any]]:
    """Per subset: label, modalities, calibrated probabilities, prediction, confidence, and
    `complete` (False when the case itself lacks one of the subset's modalities)."""
    model = enc.entry.model
    combos = subsets(list(model.modalities))
    rows = len(combos)
    present = {m: (m in enc.feats and (enc.mask is None or m not in enc.mask or bool(enc.mask[m].all())))
               for m in model.modalities}
    mask = {m: torch.tensor([m in c and present[m] for c in combos]) for m in enc.feats}
    with torch.no_grad():
        probs = calibrated(head_batch(enc, rows, mask=mask).logits, enc.entry)
    classes = enc.classes
    picks = decided(probs.numpy(), enc.entry)
    out = []
    for i, combo in enumerate(combos):
        p = probs[i]
        k = int(picks[i])
        out.append({"subset": subset_label(combo), "modalities": list(combo),
                    "probabilities": dict(zip(classes, p.tolist())), "prediction": classes[k],
                    "confidence": float(p[k]), "complete": all(present[m] for m in combo)})
    return out


def modality_ablation(entry: Any, case: Case, encoded: Encoded | None = None) -> list[dict[str, Any]]:
    """Prediction for every subset of `entry`'s modalities on this case (see `ablation_encoded`)."""
    return ablation_encoded(encoded or encode_case(entry, case))
