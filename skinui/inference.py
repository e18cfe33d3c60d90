"""A loaded zoo entry: turns Cases into a model batch and a model output into `Prediction`s.

`Entry.batch` is the one place where images and typed-in metadata become tensors for a shipped
model (preprocessing as in training, metadata cleaned by the entry's own fitted encoder), so the
app, the CLI, the explain layer and evaluation all predict identically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from skinui.cases import Case, ConceptVector

BRANCHES = ("image", "joint", "metadata")
LABELS = {"dermoscopic": "dermoscopic image", "clinical": "clinical image", "metadata": "metadata"}


@dataclass
class Prediction:
    probabilities: dict[str, float]
    prediction: str
    confidence: float
    branch_probabilities: dict[str, dict[str, float]] | None = None
    branch_weights: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Entry:
    name: str
    card: dict[str, Any]
    model: torch.nn.Module
    encoder: Any  # skinui.encoding.MetadataEncoder | None
    schema: Any  # skinui.schema.Schema | None
    temperature: float = 1.0

    @property
    def calibration(self) -> dict[str, Any]:
        """The card's calibration block (temperature, and the prevalence terms when fitted)."""
        return {**(self.card.get("calibration") or {}), "temperature": self.temperature}

    def calibrated_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated log-probabilities up to a constant (see skinui.calibration)."""
        from skinui.calibration import calibrated_logits

        return calibrated_logits(logits, self.calibration)

    def decide(self, probs: torch.Tensor | np.ndarray) -> np.ndarray:
        """Predicted class per row: argmax p_k / pi_k^tau when the card has a prevalence, else argmax p_k."""
        from skinui.calibration import decide_from_log_probs

        return decide_from_log_probs(np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)), self.calibration)

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def modalities(self) -> list[str]:
        return list(self.model.modalities)

    def _requested(self, modalities: list[str] | tuple[str, ...] | None) -> list[str]:
        if modalities is None:
            return self.modalities
        unknown = [m for m in modalities if m not in self.modalities]
        if unknown:
            raise ValueError(f"Entry {self.name} does not use {', '.join(unknown)}; "
                             f"its modalities are {', '.join(self.modalities)}.")
        return [m for m in self.modalities if m in modalities]

    def _image_tensor(self, modality: str, value: Any) -> torch.Tensor:
        from skinui.models.encoders import ConceptMLP
        from skinui.models.preprocess import to_tensor

        wants_concepts = isinstance(self.model.image_encoders[modality], ConceptMLP)
        if isinstance(value, ConceptVector) != wants_concepts:
            need = "concept scores" if wants_concepts else "an image"
            raise ValueError(f"Entry {self.name} needs {need} for the {LABELS[modality]}.")
        if wants_concepts:
            return torch.as_tensor(np.asarray(value.values, dtype=np.float32))
        return to_tensor(value, int(self.model.cfg.get("image_size", 224)))

    def prepare(self, cases: list[Case], modalities: list[str] | None = None) -> tuple[dict[str, Any], list[list[str]]]:
        """The model batch plus per-case warnings (missing inputs, cleaned metadata values)."""
        wanted = self._requested(modalities)
        notes: list[list[str]] = [[] for _ in cases]
        batch: dict[str, Any] = {"mask": {}}
        for m in self.model.image_modalities:
            values = [c.image(m) if m in wanted else None for c in cases]
            present = [v is not None for v in values]
            if not any(present):
                batch[m] = None
                continue
            tensors = [self._image_tensor(m, v) if v is not None else None for v in values]
            like = next(t for t in tensors if t is not None)
            batch[m] = torch.stack([t if t is not None else torch.zeros_like(like) for t in tensors])
            batch["mask"][m] = torch.tensor(present)
        if "metadata" in self.modalities:
            batch["metadata"] = None
            if "metadata" in wanted:
                rows, present = [], []
                for i, case in enumerate(cases):
                    clean, warns = self.encoder.validate(case.metadata or {})
                    notes[i] += warns
                    rows.append(clean)
                    present.append(any(v is not None for v in clean.values()))
                batch["metadata"] = torch.from_numpy(self.encoder.transform(rows))
                batch["mask"]["metadata"] = torch.tensor(present)
        for i in range(len(cases)):
            have = [m for m in wanted if batch.get(m) is not None and bool(batch["mask"][m][i])]
            if not have:
                raise ValueError(f"Case {cases[i].case_id} carries none of this model's inputs "
                                 f"({', '.join(LABELS[m] for m in wanted)}); give at least one.")
            notes[i] += [f"No {LABELS[m]} given; the model predicted without it." for m in wanted if m not in have]
        if self.card.get("leaky"):
            for n in notes:
                n.append("This model uses label-leaking metadata fields (leaky: true); its scores are optimistic.")
        return batch, notes

    def batch(self, cases: list[Case], modalities: list[str] | None = None) -> dict[str, Any]:
        """The model batch for `cases` (absent modalities masked)."""
        return self.prepare(cases, modalities)[0]

    @torch.no_grad()
    def predict(self, cases: list[Case], modalities: list[str] | None = None,
                calibrated: bool = True) -> list[Prediction]:
        batch, notes = self.prepare(cases, modalities)
        out = self.model(batch)
        cal_probs = self.calibrated_logits(out.logits).softmax(1).numpy().astype(float)
        probs = cal_probs if calibrated else out.logits.float().softmax(1).numpy().astype(float)
        decided = self.decide(cal_probs)  # the decision is always taken on calibrated probabilities
        branch = {b: z.softmax(1).numpy().astype(float) for b, z in out.branch_logits.items()}
        alpha = out.alpha.numpy().astype(float) if out.alpha is not None else None
        classes = self.classes
        preds = []
        for i in range(len(cases)):
            k, top = int(decided[i]), int(probs[i].argmax())
            if k != top and calibrated:
                notes[i].append(
                    f"{classes[top]} is the most probable class ({probs[i, top]:.0%}), but {classes[k]} is predicted: "
                    f"relative to how common each class is, the evidence favours {classes[k]} "
                    f"(prevalence-adjusted decision, the rule balanced accuracy rewards).")
            preds.append(Prediction(
                probabilities=dict(zip(classes, probs[i].tolist())),
                prediction=classes[k],
                confidence=float(probs[i, k]),
                branch_probabilities={b: dict(zip(classes, p[i].tolist())) for b, p in branch.items()} or None,
                branch_weights=dict(zip(BRANCHES, alpha[i].tolist())) if alpha is not None else None,
                warnings=notes[i],
            ))
        return preds
