"""The one encode pass every explanation reuses, and the small helpers they share.

`encode_case` runs the backbones once (no gradients) and keeps the per-modality features; every
explanation then works on `model.head` over those cached features (modality ablation, metadata
relevance) or re-runs only the one image branch it explains (Grad-CAM), never all of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from skinui.cases import Case

BRANCHES = ("image", "joint", "metadata")


@dataclass
class Encoded:
    """One case through the encoders: the batch, cached features, presence mask and the output."""

    entry: Any
    case: Case
    batch: dict[str, Any]
    feats: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor] | None
    logits: torch.Tensor  # [1, K] uncalibrated
    branch_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    alpha: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)  # the entry's warnings (missing inputs, cleaned values)

    @property
    def classes(self) -> list[str]:
        return classes_of(self.entry)

    def probabilities(self) -> np.ndarray:
        """Calibrated probabilities [K] (softmax of logits / T)."""
        return calibrated(self.logits.detach(), self.entry)[0].numpy()


def classes_of(entry: Any) -> list[str]:
    classes = entry.card.get("classes") if getattr(entry, "card", None) else None
    return list(classes or entry.schema.classes)


def temperature_of(entry: Any) -> float:
    t = getattr(entry, "temperature", None)
    return float(t) if t else 1.0


def calibrated(logits: torch.Tensor, entry: Any) -> torch.Tensor:
    """Calibrated probabilities: the entry's own calibration (temperature and prevalence terms) when it
    has one, else softmax(logits / T). JI-ADF logits are log-probabilities, so this holds for every structure."""
    if hasattr(entry, "calibrated_logits"):
        return torch.softmax(entry.calibrated_logits(logits), dim=-1)
    return torch.softmax(logits / temperature_of(entry), dim=-1)


def decided(probs: torch.Tensor | np.ndarray, entry: Any) -> np.ndarray:
    """Predicted class per row by the entry's decision rule (prevalence-adjusted where the card says so)."""
    if hasattr(entry, "decide"):
        return entry.decide(probs)
    return np.asarray(probs).argmax(-1)


def encode_case(entry: Any, case: Case) -> Encoded:
    """Backbones once, head once; everything else reuses `feats`."""
    batch, notes = entry.prepare([case])
    model = entry.model
    with torch.no_grad():
        feats = model.encode(batch)
        out = model.head(feats, batch.get("mask"))
    return Encoded(entry, case, batch, feats, batch.get("mask"), out.logits,
                   dict(out.branch_logits or {}), out.alpha, notes[0])


def resolve_target(entry: Any, target: int | str | None, logits: torch.Tensor) -> int:
    """Class index from an index, a class code, or None (the predicted class)."""
    classes = classes_of(entry)
    if target is None or target == "":
        return int(decided(calibrated(logits.detach()[:1].float(), entry).numpy(), entry)[0])
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in classes:
            raise ValueError(f"{target!r} is not a class of {entry.name}; choose one of {', '.join(classes)}.")
        return classes.index(target)
    index = int(target)
    if not 0 <= index < len(classes):
        raise ValueError(f"class index {index} is out of range for {entry.name} ({len(classes)} classes).")
    return index


def head_batch(enc: Encoded, rows: int, overrides: dict[str, torch.Tensor] | None = None,
               mask: dict[str, torch.Tensor] | None = None) -> Any:
    """`model.head` on the cached features repeated `rows` times, with some modalities overridden."""
    feats = {m: f.expand(rows, -1) for m, f in enc.feats.items() if m not in (overrides or {})}
    feats.update(overrides or {})
    if mask is None and enc.mask is not None:
        mask = {m: v.expand(rows) for m, v in enc.mask.items()}
    return enc.entry.model.head(feats, mask)


def branch_summary(enc: Encoded) -> tuple[dict[str, dict[str, float]] | None, dict[str, float] | None]:
    """Per-branch probabilities and branch weights alpha (JIF / JI-ADF), else (None, None)."""
    if not enc.branch_logits:
        return None, None
    classes = enc.classes
    probs = {b: dict(zip(classes, torch.softmax(z[0].float(), -1).tolist()))
             for b, z in enc.branch_logits.items()}
    weights = dict(zip(BRANCHES, enc.alpha[0].tolist())) if enc.alpha is not None else None
    return probs, weights


NOISE_FLOOR = 1e-4  # relative: batched float32 evaluation differs by ~1e-6, which is no relevance


def normalise_signed(scores: dict[str, float]) -> dict[str, float]:
    """Divide by the largest magnitude: |values| in [0, 1], sign kept; float noise becomes exactly 0."""
    top = max((abs(v) for v in scores.values()), default=0.0)
    if top <= 0:
        return dict.fromkeys(scores, 0.0)
    return {k: (float(v) / top if abs(v) > NOISE_FLOOR * top else 0.0) for k, v in scores.items()}
