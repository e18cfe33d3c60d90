"""Test-time views of a photo, and how an entry that averages them combines its head's outputs.

A card whose `views` block decides "averaged" predicts from the mean probabilities over the photo
and its mirrored, flipped and turned views; its calibration, decision rule and prediction sets are
fitted on those averaged probabilities (training.export), so everything downstream (decisions,
sets, what-if, ablation, relevance, Grad-CAM targets) reads one set of numbers. Whether an entry
averages is decided at export on held-out halves of validation (`skinui.calibration.check_views`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

VIEWS = {"original": (), "mirrored": (-1,), "flipped": (-2,), "turned": (-2, -1)}  # view -> axes to flip
FLIPPED = tuple(name for name, axes in VIEWS.items() if axes)  # every view but the photo itself


def average_logits(z: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """[V, N, K] logits per view -> [N, K] log of the views' mean probabilities (softmax of it is that mean)."""
    if isinstance(z, torch.Tensor):
        return torch.logsumexp(torch.log_softmax(z.float(), -1), 0) - math.log(z.shape[0])
    t = torch.from_numpy(np.asarray(z, dtype=np.float64))
    return (torch.logsumexp(torch.log_softmax(t, -1), 0) - math.log(t.shape[0])).numpy()


def combine(outputs: list[Any]) -> Any:
    """One `ModelOutput` from the head's output on each view: logits and branch logits averaged as
    probabilities, JI-ADF weights and further-task probabilities averaged, other features of the photo."""
    from skinui.models.structures import ModelOutput

    if len(outputs) == 1:
        return outputs[0]
    first = outputs[0]
    logits = average_logits(torch.stack([o.logits for o in outputs]))
    branches = {b: average_logits(torch.stack([o.branch_logits[b] for o in outputs])) for b in first.branch_logits or {}}
    features = dict(first.features)
    for k in features:  # further tasks' probabilities (FusionM4Net): the views' mean, like the diagnosis
        if k.startswith("task.") and k.count(".") == 1:
            features[k] = torch.stack([o.features[k] for o in outputs]).mean(0)
    alpha = torch.stack([o.alpha for o in outputs]).mean(0) if first.alpha is not None else None
    return ModelOutput(logits=logits, probs=logits.softmax(-1), branch_logits=branches, alpha=alpha,
                       features=features, branch_mask=first.branch_mask)


def card_averages(card: dict[str, Any] | None) -> bool:
    """Does the card say its entry predicts from the views' mean (no model load; `Entry.averages_views`)?"""
    return ((card or {}).get("views") or {}).get("decision") == "averaged"


def decision(card: dict[str, Any] | None) -> str:
    """"averaged" or "single": what an explanation measurement of the entry was computed on (stamped into
    every measurement file, so one made before the entry's views decision changed shows as stale)."""
    return "averaged" if card_averages(card) else "single"


def card_words(card: dict[str, Any] | None) -> str:
    """One line for a model card: which views the entry predicts from, and the held-out evidence for it."""
    block = (card or {}).get("views") or {}
    check = block.get("check") or {}
    if not block or not check:
        return ""
    evidence = (f"held-out halves of validation: {check['mean_gain']:+.3f} balanced accuracy on average for the "
                f"views' mean, losing on {check['share_losing']:.0%} of them")
    if card_averages(card):
        return (f"- **Views**: predicts from the mean over the photo and its mirrored, flipped and turned views "
                f"(4x the image-encoder time; calibration and prediction sets fitted on that mean; {evidence})")
    return f"- **Views**: predicts from the photo alone (averaging its flipped views did not earn its place: {evidence})"


CAM_SENTENCE = (" This entry predicts from the mean over the photo and its mirrored, flipped and turned views, so each "
                "map is the mean of the four views' maps, each flipped back onto the photo.")
