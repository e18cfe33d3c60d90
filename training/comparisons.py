"""Intervals and paired comparisons between a dataset's zoo entries, scored on the same cases.

`python -m training.reports` scores every entry on its validation and test splits, then this
module turns those scores into what a comparison needs to be honest:

- `intervals`: 95% percentile-bootstrap intervals of balanced accuracy and macro AUC, resampling
  groups (lesions or patients), never images;
- `comparisons`: paired bootstrap intervals of the *difference* to the entry's image-only
  baseline(s), to the dataset's metadata-only entry and to the dataset's best entry, where "best"
  is chosen on validation balanced accuracy (the test split is read once, never to choose);
- `metadata_adds`: the entry with its metadata switched off (its own modality ablation) against
  the entry as shipped, paired;
- `collection_check` (datasets whose schema declares a `missingness_block`): on held-out complete
  cases, how far blanking that block moves the predicted probability of the cancers, and the
  metrics on complete cases only.

Every entry of a dataset sees the same cases in the same order (one recorded split, checked by the
SHA-256 of its test ids), so the replicates are shared and the differences are paired.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skinui.evidence import best_on_validation
from skinui.stats import bootstrap_scores, paired_difference

N_BOOT = 2000
SEED = 0


@dataclass
class Scored:
    """One entry on one split: what the intervals and paired differences are computed from."""

    entry: str
    case_ids: list[str]
    groups: list[str]
    labels: np.ndarray
    subsets: dict[str, tuple[np.ndarray, np.ndarray]]  # "D+M" -> (calibrated probs [N, K], decisions [N])
    full: str  # the subset name of the entry as shipped

    @classmethod
    def from_extras(cls, entry: str, extras: dict[str, Any], modalities: Sequence[str]) -> Scored:
        from skinui.vocabulary import subset_name

        return cls(entry, [c.case_id for c in extras["cases"]], list(extras["groups"]), np.asarray(extras["labels"]),
                   dict(extras["scored"]), subset_name(modalities))

    @property
    def shipped(self) -> tuple[np.ndarray, np.ndarray]:
        return self.subsets[self.full]


def intervals(s: Scored, n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, Any]:
    probs, predicted = s.shipped
    return bootstrap_scores(s.labels, probs, predicted, s.groups, n_boot=n_boot, seed=seed)


def _paired(a: Scored, b: Scored, n_boot: int, seed: int) -> dict[str, Any] | None:
    if a.case_ids != b.case_ids:  # different splits: no pairing possible
        return None
    return paired_difference(a.labels, a.groups, a.shipped, b.shipped, n_boot=n_boot, seed=seed)


def references(card: dict[str, Any], cards: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Which entries `card` is compared with: its image-only baselines, metadata-only, best on validation."""
    names = {c["name"] for c in cards}
    cfg = (card.get("training") or {}).get("config") or {}
    backbone = (cfg.get("stage2") or {}).get("backbone")
    image_only = []
    if backbone and card["modalities"] != ["metadata"]:
        from training.stage2 import backbone_entries

        mods = [m for m in card["modalities"] if m != "metadata"]
        image_only = sorted(backbone_entries(backbone, mods) & names)
    metadata_only = sorted(c["name"] for c in cards if c["modalities"] == ["metadata"] and not c.get("leaky"))
    best = best_on_validation(cards)
    out = {"image_only": image_only, "metadata_only": metadata_only, "best": [best] if best else []}
    return {role: [n for n in found if n != card["name"]] for role, found in out.items()}


def compare_dataset(cards: Sequence[dict[str, Any]], test: dict[str, Scored], n_boot: int = N_BOOT,
                    seed: int = SEED) -> dict[str, dict[str, Any]]:
    """Per entry: {role: {other entry: paired difference (this minus other)}} on the test split."""
    out: dict[str, dict[str, Any]] = {}
    for card in cards:
        name = card["name"]
        if name not in test:
            continue
        found: dict[str, Any] = {}
        for role, others in references(card, cards).items():
            diffs = {o: d for o in others if o in test and (d := _paired(test[name], test[o], n_boot, seed))}
            if diffs:
                found[f"vs_{role}"] = diffs
        out[name] = found
    return out


def metadata_adds(s: Scored, n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, Any] | None:
    """The entry as shipped minus the same entry with its metadata switched off (paired), or None."""
    parts = s.full.split("+")
    if "M" not in parts or len(parts) < 2:
        return None
    off = "+".join(p for p in parts if p != "M")
    diff = paired_difference(s.labels, s.groups, s.shipped, s.subsets[off], n_boot=n_boot, seed=seed)
    return {"without_metadata": off, **diff}


def blanked(cases: Sequence[Any], fields: Sequence[str]) -> list[Any]:
    """Copies of `cases` with `fields` set to missing (the originals are not touched)."""
    return [dataclasses.replace(c, metadata={**c.metadata, **{f: None for f in fields}}) for c in cases]


def complete_mask(cases: Sequence[Any], fields: Sequence[str]) -> np.ndarray:
    return np.array([all(c.metadata.get(f) is not None for f in fields) for c in cases], dtype=bool)


def collection_check(entry: Any, schema: Any, extras: dict[str, Any], n_boot: int = N_BOOT,
                     seed: int = SEED) -> dict[str, Any] | None:
    """On complete held-out cases: the signed mean change in P(cancers) when the block is blanked,
    and the metrics on complete cases only (with intervals). None when the schema declares no block."""
    from skinui.calibration import calibrated_logits, softmax
    from training.evaluate import subset_logits

    block, cancers = list(schema.missingness_block), list(schema.cancer_classes)
    if not block or not cancers or "metadata" not in entry.model.modalities:
        return None
    cases, labels, groups = extras["cases"], np.asarray(extras["labels"]), list(extras["groups"])
    keep = complete_mask(cases, block)
    if keep.sum() < 2:
        return None
    complete = [c for c, k in zip(cases, keep) if k]
    full = tuple(entry.model.modalities)
    idx = [entry.card["classes"].index(c) for c in cancers]

    def p_cancer(cs: list[Any]) -> np.ndarray:
        z = subset_logits(entry, cs)[full]
        return softmax(calibrated_logits(z, entry.calibration))[:, idx].sum(1)

    shift = p_cancer(blanked(complete, block)) - p_cancer(complete)
    probs, predicted = extras["scored"][Scored.from_extras(entry.name, extras, full).full]
    sub = [g for g, k in zip(groups, keep) if k]
    return {
        "block": block,
        "cancer_classes": cancers,
        "n_complete": int(keep.sum()),
        "n_cases": int(len(cases)),
        "mean_shift_p_cancer": float(shift.mean()),  # signed: negative = blanking makes cancer less likely
        "mean_abs_shift_p_cancer": float(np.abs(shift).mean()),
        "max_abs_shift_p_cancer": float(np.abs(shift).max()),
        "complete_cases": bootstrap_scores(labels[keep], probs[keep], predicted[keep], sub, n_boot=n_boot, seed=seed),
    }
