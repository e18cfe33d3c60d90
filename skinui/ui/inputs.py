"""One session's typed-in case: the inputs, the `Case` an entry reads, and notes on what it ignores."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skinui.cases import Case
from skinui.ui.cards import takes_pixels, usable_modalities
from skinui.vocabulary import IMAGE_MODALITIES


@dataclass
class CaseInputs:
    """What one session typed in: pixels per image modality and raw metadata values."""

    images: dict[str, np.ndarray | None]
    metadata: dict[str, Any]

    def present(self) -> list[str]:
        have = [m for m in IMAGE_MODALITIES if self.images.get(m) is not None]
        if any(v not in (None, "", "unknown") for v in self.metadata.values()):
            have.append("metadata")
        return have


def build_case(entry: Any, inputs: CaseInputs) -> Case:
    """A `Case` for `entry` from typed inputs: images the entry does not use are left out (as are
    photos for a concept-score entry); metadata stays raw, because `Entry.prepare` cleans it with
    the entry's encoder and words the warnings."""
    uses = set(usable_modalities(entry.card))
    images = {m: (inputs.images.get(m) if m in uses else None) for m in IMAGE_MODALITIES}
    metadata = dict(inputs.metadata) if "metadata" in uses else {}
    return Case("", dermoscopic=images["dermoscopic"], clinical=images["clinical"], metadata=metadata)


def ignored_notes(card: dict[str, Any], present: list[str]) -> list[str]:
    """Sentences for inputs the case has but the entry does not use."""
    notes = []
    if not takes_pixels(card) and any(m in IMAGE_MODALITIES for m in card.get("modalities", [])):
        notes.append(f"{card['name']} reads concept scores (MILK10k MONET) instead of photos, which this app cannot "
                     "compute from an image; it predicts from the metadata and its missing-image embeddings.")
    ignored = [m for m in present if m not in card.get("modalities", [])]
    if ignored:
        notes.append(f"{card['name']} does not use the {' or '.join(ignored)} input; it is ignored.")
    return notes


def modality_notes(card: dict[str, Any], present: list[str]) -> list[str]:
    """Sentences on what happens with this entry given the modalities the case has."""
    needs = usable_modalities(card)
    notes = []
    missing = [m for m in needs if m not in present]
    if missing:
        notes.append(f"This case has no {' or '.join(missing)} input; {card['name']} will use its learned "
                     f"'missing' embedding for it and rely on {', '.join(m for m in needs if m in present) or 'nothing'}.")
    notes += ignored_notes(card, present)
    if not any(m in present for m in needs):
        notes.append("The case has none of this entry's inputs, so the prediction is only the model's prior.")
    return notes
