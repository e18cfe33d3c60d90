"""A loaded zoo entry, and the one prediction path every caller shares.

`Entry.encode(cases)` is the one place where images and typed-in metadata become tensors for a
shipped model (preprocessing as in training, metadata cleaned by the entry's own fitted encoder)
and go through the backbones once; the result, an `Encoded`, holds the per-branch features and the
head's output. `Encoded.predictions()` applies the card's calibration and decision rule, the only
place they are applied. `Entry.predict` is encode + predictions; the explain layer works on the
same `Encoded` (its features are reused, never recomputed), so the app, the API, the CLI, the
explanations and evaluation all predict identically.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from skinui.cases import Case, ConceptVector
from skinui.encoding import is_missing
from skinui.views import average_logits, card_averages
from skinui.vocabulary import BRANCHES
from skinui.vocabulary import MODALITY_LABELS as LABELS

if TYPE_CHECKING:
    from skinui.encoding import MetadataEncoder
    from skinui.schema import Schema


@dataclass
class Prediction:
    probabilities: dict[str, float]
    prediction: str
    confidence: float
    branch_probabilities: dict[str, dict[str, float]] | None = None
    branch_weights: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)
    prediction_set: list[str] | None = None  # conformal set, most probable first (card's `conformal`)
    set_coverage: float | None = None  # the guaranteed coverage of that set (1 - alpha)
    set_mode: str | None = None  # "marginal" (over all cases) or "class" (for each true diagnosis)
    unusual: dict[str, dict[str, float]] | None = None  # image modality -> {score, threshold, unusual}
    uncertainty: dict[str, dict[str, float]] | None = None  # measure -> {value, rank among validation cases}
    tasks: dict[str, dict[str, float]] | None = None  # further tasks (Derm7pt's criteria) -> class probabilities


@dataclass
class Entry:
    name: str
    card: dict[str, Any]
    model: torch.nn.Module
    encoder: MetadataEncoder | None
    schema: Schema | None
    temperature: float = 1.0
    detectors: dict[str, Any] = field(default_factory=dict)  # image modality -> skinui.trust.ood.Detector

    def task_classes(self, task: str, k: int) -> list[str]:
        """A further task's class names: the card's (FusionM4Net's `tasks` block), else the dataset's."""
        from skinui.datasets import DATASETS

        names = (((self.card.get("fusionm4net") or {}).get("tasks") or {}).get(task) or {}).get("classes")
        if not names and self.card.get("dataset") in DATASETS:
            names = DATASETS.get(self.card["dataset"]).tasks.get(task)
        return list(names) if names and len(names) == k else [str(j) for j in range(k)]

    @property
    def calibration(self) -> dict[str, Any]:
        """The card's calibration block (temperature, and the prevalence terms when fitted)."""
        return {**(self.card.get("calibration") or {}), "temperature": self.temperature}

    def calibrated_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated log-probabilities up to a constant (see skinui.calibration)."""
        from skinui.calibration import calibrated_logits

        return calibrated_logits(logits, self.calibration)

    def calibrated_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """softmax of the calibrated logits; differentiable (metadata relevance needs the gradient)."""
        return torch.softmax(self.calibrated_logits(logits), dim=-1)

    def decide(self, probs: torch.Tensor | np.ndarray) -> np.ndarray:
        """Predicted class per row: argmax p_k / pi_k^tau when the card has a prevalence, else argmax p_k."""
        from skinui.calibration import decide_from_log_probs

        return decide_from_log_probs(np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)), self.calibration)

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def pixel_modalities(self) -> list[str]:
        """Image modalities read from pixels (concept-score branches have no flipped views): the card's."""
        from skinui.zoo import pixel_modalities  # zoo imports this module

        return pixel_modalities(self.card)

    @property
    def averages_views(self) -> bool:
        """Whether this entry predicts from the mean over the photo's views (`skinui.views`): its card's
        `views` block decided so at export, on held-out halves of validation."""
        return card_averages(self.card) and bool(self.pixel_modalities)

    def head(self, feats: dict[str, torch.Tensor], mask: dict[str, torch.Tensor] | None = None,
             flipped: list[dict[str, torch.Tensor]] | None = None) -> Any:
        """`model.head` on `feats` (the photo's); for an entry that averages views, also on each flipped
        view's image features (`flipped`, one dict per `skinui.views.FLIPPED` view, laid over `feats`),
        the views combined by `skinui.views.combine`."""
        from skinui.views import combine

        out = self.model.head(feats, mask)
        if not self.averages_views or not flipped:
            return out
        return combine([out] + [self.model.head({**feats, **f}, mask) for f in flipped])

    def flipped_features(self, batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        """Image features of every flipped view of the batch's pixels, one dict per `FLIPPED` view
        (one encoder pass over all of them: faster than a pass per view)."""
        from skinui.views import FLIPPED, VIEWS

        pix = [m for m in self.pixel_modalities if batch.get(m) is not None]
        if not pix:
            return []
        n = batch[pix[0]].shape[0]
        stacked = self.model.encode({m: torch.cat([torch.flip(batch[m], VIEWS[v]) for v in FLIPPED]) for m in pix})
        return [{m: f[i * n:(i + 1) * n] for m, f in stacked.items()} for i in range(len(FLIPPED))]

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
        # the entry's own image preprocessing (model.preprocess), exactly as in training
        return to_tensor(value, int(self.model.cfg.get("image_size", 224)), self.model.cfg.get("preprocess"))

    def prepare(self, cases: list[Case], modalities: list[str] | None = None,
                images: dict[str, Any] | None = None, quality: bool = True) -> tuple[dict[str, Any], list[list[str]]]:
        """The model batch plus per-case warnings (missing inputs, cleaned metadata values, and with
        `quality` the image-quality checks of skinui.trust.quality: blur, exposure, tiny lesion).

        `images`: a batch these cases were already prepared into; its image tensors are reused
        (a what-if that changes only metadata does not preprocess the photos again)."""
        wanted = self._requested(modalities)
        notes: list[list[str]] = [[] for _ in cases]
        batch: dict[str, Any] = {"mask": {}}
        if quality:
            from skinui.trust.quality import check_image

            for m in [m for m in self.model.image_modalities if m in wanted]:
                for i, case in enumerate(cases):
                    if isinstance(v := case.image(m), np.ndarray):
                        notes[i] += check_image(v, m)
        for m in self.model.image_modalities:
            if images is not None and m in images:
                batch[m] = images[m]
                if m in (images.get("mask") or {}):
                    batch["mask"][m] = images["mask"][m]
                continue
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
                who = f"Case {cases[i].case_id}" if cases[i].case_id else "This case"
                # Metadata sent but all refused (e.g. only {"age": -5}) would otherwise read as "no
                # metadata at all"; say so, or the user cannot tell what was wrong with it.
                refused = "metadata" in wanted and any(not is_missing(v) for v in (cases[i].metadata or {}).values())
                why = ", as every metadata value given was invalid or unknown" if refused else ""
                raise ValueError(f"{who} carries none of this model's inputs "
                                 f"({', '.join(LABELS[m] for m in wanted)}){why}; give at least one.")
            notes[i] += [f"No {LABELS[m]} given; the model predicted without it." for m in wanted if m not in have]
        if self.card.get("leaky"):
            for n in notes:
                n.append("This model uses label-leaking metadata fields (leaky: true); its scores are optimistic.")
        return batch, notes

    def batch(self, cases: list[Case], modalities: list[str] | None = None) -> dict[str, Any]:
        """The model batch for `cases` (absent modalities masked; no warnings, so no quality checks)."""
        return self.prepare(cases, modalities, quality=False)[0]

    @torch.no_grad()
    def encode(self, cases: Case | list[Case], modalities: list[str] | None = None) -> Encoded:
        """`cases` through the backbones once and the head once (raises ValueError with a sentence
        when a case carries none of the entry's inputs)."""
        cases = [cases] if isinstance(cases, Case) else list(cases)
        batch, notes = self.prepare(cases, modalities)
        styles: dict[str, torch.Tensor] = {}
        feats = self.model.encode(batch, styles)
        flipped = self.flipped_features(batch) if self.averages_views else []
        out = self.head(feats, batch.get("mask"), flipped)
        return Encoded.of(self, cases, batch, feats, out, notes, styles, flipped)

    def predict(self, cases: list[Case], modalities: list[str] | None = None,
                calibrated: bool = True, tta: bool = False, average_views: bool = False) -> list[Prediction]:
        """`tta`: also measure the spread over flipped views (three more encoder passes per image).
        `average_views`: predict from the mean probabilities over the photo and its flipped views (the
        same three passes; see `Encoded.predictions`); an entry whose card averages views always does."""
        return self.encode(cases, modalities).predictions(calibrated, tta, average_views)


@dataclass
class Encoded:
    """Cases through an entry's encoders: the batch, per-modality features, the head's output.

    Explanations reuse `feats` (Grad-CAM re-runs only the branch it explains; relevance and
    ablation run only `model.head`), so one `Encoded` per case and entry serves every view.
    """

    entry: Entry
    cases: list[Case]
    batch: dict[str, Any]
    feats: dict[str, torch.Tensor]
    logits: torch.Tensor  # [N, K] uncalibrated
    branch_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    alpha: torch.Tensor | None = None  # [N, 3] JI-ADF branch weights
    notes: list[list[str]] = field(default_factory=list)  # per case: missing inputs, cleaned values
    styles: dict[str, torch.Tensor] = field(default_factory=dict)  # image modality -> stem statistics
    _views: torch.Tensor | None = field(default=None, repr=False, compare=False)  # `view_logits`, once computed
    tasks: dict[str, torch.Tensor] = field(default_factory=dict)  # further task -> [N, K_task] probabilities
    flipped: list[dict[str, torch.Tensor]] = field(default_factory=list)  # flipped views' image features, once computed

    @classmethod
    def of(cls, entry: Entry, cases: list[Case], batch: dict[str, Any], feats: dict[str, torch.Tensor], out: Any,
           notes: list[list[str]], styles: dict[str, torch.Tensor],
           flipped: list[dict[str, torch.Tensor]] | None = None) -> Encoded:
        """From the head's `ModelOutput` (a multi-task structure's further tasks are its `task.<name>` features)."""
        tasks = {k[len("task."):]: v for k, v in out.features.items() if k.startswith("task.") and k.count(".") == 1}
        return cls(entry, cases, batch, feats, out.logits, dict(out.branch_logits or {}), out.alpha, notes, styles,
                   tasks=tasks, flipped=list(flipped or []))

    def flipped_features(self) -> list[dict[str, torch.Tensor]]:
        """The flipped views' image features (`Entry.flipped_features`), computed once."""
        if not self.flipped:
            self.flipped = self.entry.flipped_features(self.batch)
        return self.flipped

    def task_probabilities(self, i: int) -> dict[str, dict[str, float]] | None:
        """Case i's further-task probabilities by class name (None for single-task entries)."""
        if not self.tasks:
            return None
        return {t: dict(zip(self.entry.task_classes(t, int(p.shape[1])), p[i].detach().double().tolist()))
                for t, p in self.tasks.items()}

    @property
    def case(self) -> Case:
        return self.cases[0]

    @property
    def mask(self) -> dict[str, torch.Tensor] | None:
        return self.batch.get("mask")

    @property
    def classes(self) -> list[str]:
        return self.entry.classes

    def probabilities(self) -> np.ndarray:
        """Calibrated probabilities [N, K] (the card's temperature and prevalence terms)."""
        return self.entry.calibrated_probabilities(self.logits.detach()).numpy().astype(float)

    def decisions(self) -> np.ndarray:
        """The card's decision rule on the calibrated probabilities: class index per case."""
        return self.entry.decide(self.probabilities())

    def unusual(self) -> list[dict[str, dict[str, float]]]:
        """Per case: the out-of-distribution score of each image it carries, against the card's threshold."""
        found: list[dict[str, dict[str, float]]] = [{} for _ in self.cases]
        for m, det in self.entry.detectors.items():
            if m not in self.styles:
                continue
            scores = det.score(self.styles[m].detach().float().numpy())
            cut = float(self.entry.card["ood"][m]["threshold"])
            present = self.mask[m].numpy() if self.mask and m in self.mask else np.ones(len(scores), bool)
            for i, sc in enumerate(scores):
                if present[i]:
                    found[i][m] = {"score": float(sc), "threshold": cut, "unusual": bool(sc > cut)}
        return found

    @torch.no_grad()
    def view_logits(self) -> torch.Tensor | None:
        """[V, N, K] uncalibrated logits of the test-time-augmentation views, the original first (None
        without images; computed once per `Encoded`)."""
        if self._views is not None:
            return self._views
        flipped = self.flipped_features()
        if not flipped:
            return None
        # each view on its own: the photo's logits are the head on the photo, even where the entry averages
        self._views = torch.stack([self.entry.model.head({**self.feats, **f}, self.mask).logits
                                   for f in [{}] + flipped])
        return self._views

    def view_probabilities(self, calibrated: bool = True) -> np.ndarray | None:
        """[V, N, K] probabilities (calibrated by default) of the test-time-augmentation views."""
        z = self.view_logits()
        if z is None:
            return None
        probs = self.entry.calibrated_probabilities(z) if calibrated else z.float().softmax(-1)
        return probs.numpy().astype(float)

    def uncertainty(self, tta: bool = False) -> list[dict[str, dict[str, float]]]:
        """Per case: branch disagreement (free) and, with `tta`, the spread over flipped views; each with
        its rank among the validation cases the card stores (None when the card has no reference)."""
        from skinui.trust import uncertainty as unc

        ref = self.entry.card.get("uncertainty") or {}
        found: list[dict[str, dict[str, float]]] = [{} for _ in self.cases]
        measures = {}
        if len(self.branch_logits) > 1:
            measures["branch disagreement"] = (unc.branch_disagreement(np.stack(
                [z.detach().softmax(1).numpy() for z in self.branch_logits.values()])), ref.get("branches"))
        if tta and (views := self.view_probabilities()) is not None:
            measures["test-time-augmentation spread"] = (unc.tta_spread(views), ref.get("tta"))
        for name, (values, block) in measures.items():
            q = (block or {}).get("validation_quantiles")
            # does a high value go with wrong decisions? measured on validation (None: not measured)
            signal = (ref.get("error_auroc_val") or {}).get(name)
            for i, v in enumerate(values):
                found[i][name] = {"value": float(v), "rank": unc.rank_among(float(v), q) if q else None,
                                  "error_auroc_val": signal}
        return found

    def sets(self, probs: np.ndarray | None = None) -> list[list[str]] | None:
        """The card's conformal prediction set per case, most probable first (None without one)."""
        from skinui.trust import conformal

        block = self.entry.card.get("conformal")
        if not block:
            return None
        probs = self.probabilities() if probs is None else probs
        member = conformal.sets(probs, block, self.classes, self.decisions())
        return [conformal.ordered_set(p, m, self.classes) for p, m in zip(probs, member)]

    def predictions(self, calibrated: bool = True, tta: bool = False, average_views: bool = False) -> list[Prediction]:
        """One `Prediction` per case. `average_views`: probabilities, decision and confidence from the mean
        over the photo and its three flipped views (`VIEWS`, then calibrated; no effect on entries without pixels). The
        prediction set is then left out, because its coverage was calibrated on single views. An entry
        whose card averages views (`Entry.averages_views`) already predicts that way, with its own sets."""
        averaged = average_views and not self.entry.averages_views and self.view_logits() is not None
        z = average_logits(self.view_logits()) if averaged else self.logits.detach()
        cal_probs = self.entry.calibrated_probabilities(z).numpy().astype(float)
        probs = cal_probs if calibrated else z.float().softmax(1).numpy().astype(float)
        decided = self.entry.decide(cal_probs)  # the decision is always taken on calibrated probabilities
        branch = {b: z.detach().softmax(1).numpy().astype(float) for b, z in self.branch_logits.items()}
        alpha = self.alpha.detach().numpy().astype(float) if self.alpha is not None else None
        classes = self.classes
        sets = None if averaged else self.sets(cal_probs)
        unusual, unsure = self.unusual(), self.uncertainty(tta)
        block = self.entry.card.get("conformal") or {}
        coverage, mode = (1 - float(block["alpha"]), block["mode"]) if sets else (None, None)
        preds = []
        for i in range(len(self.cases)):
            k, top = int(decided[i]), int(probs[i].argmax())
            notes = list(self.notes[i])
            if k != top and calibrated:
                notes.append(decision_note(classes[top], float(probs[i, top]), classes[k]))
            notes += [unusual_note(m, self.entry.name) for m, v in unusual[i].items() if v["unusual"]]
            if averaged and self.entry.card.get("conformal"):
                notes.append(VIEWS_SET_NOTE)
            preds.append(Prediction(
                probabilities=dict(zip(classes, probs[i].tolist())),
                prediction=classes[k],
                confidence=float(probs[i, k]),
                branch_probabilities={b: dict(zip(classes, p[i].tolist())) for b, p in branch.items()} or None,
                branch_weights=dict(zip(BRANCHES, alpha[i].tolist())) if alpha is not None else None,
                warnings=notes,
                prediction_set=sets[i] if sets else None,
                set_coverage=coverage,
                set_mode=mode,
                unusual=unusual[i] or None,
                uncertainty=unsure[i] or None,
                tasks=self.task_probabilities(i),
            ))
        return preds

    @torch.no_grad()
    def with_metadata(self, metadata: dict[str, Any]) -> Encoded:
        """The same cases with `metadata` typed in instead: the image features are reused, only the
        metadata encoder and the head run again (what-if views answer in milliseconds). Warnings and
        errors are those a fresh prediction of the edited case would give."""
        if "metadata" not in self.entry.modalities:
            raise ValueError(f"Entry {self.entry.name} reads no metadata, so changing it changes nothing.")
        cases = [replace(c, metadata=dict(metadata)) for c in self.cases]
        batch, notes = self.entry.prepare(cases, images=self.batch)
        feats = {m: f for m, f in self.feats.items() if m != "metadata"}
        if batch.get("metadata") is not None:
            feats["metadata"] = self.entry.model.encode({"metadata": batch["metadata"]})["metadata"]
        flipped = self.flipped_features() if self.entry.averages_views else []
        out = self.entry.head(feats, batch["mask"], flipped)
        return Encoded.of(self.entry, cases, batch, feats, out, notes, self.styles, flipped)

    def prediction(self) -> Prediction:
        """The prediction of a one-case `Encoded` (the app's and the explain layer's case)."""
        if len(self.cases) != 1:
            raise ValueError(f"prediction() is for one case; this holds {len(self.cases)} (use predictions()).")
        return self.predictions()[0]


VIEWS_SET_NOTE = ("Probabilities averaged over the photo and its flipped views: no prediction set is given, "
                  "because its coverage was calibrated on single views.")


def decision_note(top: str, top_probability: float, predicted: str) -> str:
    """The sentence shown wherever the prevalence-adjusted decision differs from the most probable class."""
    return (f"{top} is the most probable class ({top_probability:.0%}), but {predicted} is predicted: "
            f"relative to how common each class is, the evidence favours {predicted} "
            f"(prevalence-adjusted decision, the rule balanced accuracy rewards).")


def unusual_note(modality: str, entry: str) -> str:
    """The sentence shown wherever an image is unlike an entry's training images."""
    return (f"This {LABELS[modality]} does not look like the images {entry} was trained on (it is more unusual than "
            f"95% of its validation images), so its prediction may mean nothing; check that this is a "
            f"{LABELS[modality]} of a skin lesion.")
