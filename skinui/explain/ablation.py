"""Modality ablation of one case: every non-empty subset of the entry's modalities at once.

All subsets go through `model.head` as one batch over the cached features, with the presence mask
switching modalities off (the model then uses its learned missing embeddings, exactly as when a
case lacks that input), so no backbone runs again.
"""
from __future__ import annotations

from typing import Any

import torch

from skinui.explain.core import head_batch, resolve_target
from skinui.inference import Encoded
from skinui.vocabulary import subset_name, subsets


def modality_ablation(enc: Encoded, target: int | str | None = None) -> list[dict[str, Any]]:
    """Per subset: label, modalities, calibrated probabilities, prediction, confidence, the
    probability of `target` (None = the predicted class of the full case) and `complete` (False
    when the case itself lacks one of the subset's modalities)."""
    model = enc.entry.model
    t = resolve_target(enc, target)
    combos = subsets(list(model.modalities))
    rows = len(combos)
    present = {m: (m in enc.feats and (enc.mask is None or m not in enc.mask or bool(enc.mask[m].all())))
               for m in model.modalities}
    mask = {m: torch.tensor([m in c and present[m] for c in combos]) for m in enc.feats}
    with torch.no_grad():
        probs = enc.entry.calibrated_probabilities(head_batch(enc, rows, mask=mask).logits)
    classes = enc.classes
    picks = enc.entry.decide(probs.numpy())
    out = []
    for i, combo in enumerate(combos):
        p = probs[i]
        k = int(picks[i])
        out.append({"subset": subset_name(combo), "modalities": list(combo),
                    "probabilities": dict(zip(classes, p.tolist())), "prediction": classes[k],
                    "confidence": float(p[k]), "target": classes[t], "target_probability": float(p[t]),
                    "complete": all(present[m] for m in combo)})
    return out
