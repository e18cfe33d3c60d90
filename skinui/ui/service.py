"""What the app's views share: a read-only entry cache, safe upload reading, case assembly.

Nothing here holds per-user state. Entries are loaded once and cached (LRU) for every session; a
per-entry lock serialises use of one model because explanation hooks (Grad-CAM) attach to its
modules, and two CPU cores gain nothing from running one model twice at once anyway.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinui import evidence
from skinui.cases import IMAGE_MODALITIES, SHORT, Case, ImageError, load_image

REPO = Path(__file__).resolve().parents[2]


def weights_dir_from_env() -> Path:
    """`SKINUI_WEIGHTS` or the repository's `weights/` folder."""
    return Path(os.environ.get("SKINUI_WEIGHTS") or REPO / "weights")


class AppError(ValueError):
    """Something the user can fix; the message is the sentence shown to them."""


def card_fusion(card: dict[str, Any]) -> str:
    """The fusion method's registry name; "none" for late structures, which have no fusion module."""
    if card_structure(card) == "late":
        return "none"
    return str(((card.get("model") or {}).get("fusion") or {}).get("name", "none"))


def card_structure(card: dict[str, Any]) -> str:
    return str(((card.get("model") or {}).get("structure") or {}).get("name", "jf"))


def takes_pixels(card: dict[str, Any]) -> bool:
    """False for entries whose 'images' are concept scores (MILK10k MONET), which a photo cannot give."""
    return ((card.get("model") or {}).get("image_encoder") or {}).get("name") != "concept_mlp"


def pixel_modalities(card: dict[str, Any]) -> list[str]:
    """The entry's image modalities that an uploaded photo can feed."""
    return [m for m in card.get("modalities", []) if m in IMAGE_MODALITIES and takes_pixels(card)]


def usable_modalities(card: dict[str, Any]) -> list[str]:
    """What a user of the app can feed this entry: its photo modalities and its metadata."""
    return pixel_modalities(card) + [m for m in card.get("modalities", []) if m == "metadata"]


def headline_metrics(card: dict[str, Any]) -> str:
    """'BACC 0.71 [0.62–0.80] · AUC 0.91' from the card's test metrics and their 95% intervals."""
    parts = []
    for label, name in (("BACC", "balanced_accuracy"), ("AUC", "macro_auc")):
        value, ci = evidence.metric(card, name), evidence.interval(card, name)
        if value is not None:
            parts.append(f"{label} {value:.2f}" + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else ""))
    return " · ".join(parts) or "no test metrics"


def short_modalities(modalities: list[str]) -> str:
    return "+".join(SHORT.get(m, m) for m in modalities)


def entry_label(card: dict[str, Any]) -> str:
    """Dropdown label: dataset first so entries read grouped by dataset."""
    mods = short_modalities(list(card.get("modalities", []))) + ("" if takes_pixels(card) else ", concept scores")
    leaky = "LEAKY, for teaching: " if card.get("leaky") else ""
    return (f"{card.get('dataset', '?')} · {card['name']} ({leaky}{mods}, {card_fusion(card)}, "
            f"{card_structure(card)}; {headline_metrics(card)})")


class EntryCache:
    """Model cards listed once at start; entries loaded on first use and kept (LRU, read-only)."""

    def __init__(self, weights_dir: str | os.PathLike | None = None, capacity: int = 3) -> None:
        self.weights_dir = Path(weights_dir) if weights_dir is not None else weights_dir_from_env()
        self.capacity = capacity
        self._loaded: OrderedDict[str, tuple[Any, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()
        self.cards: list[dict[str, Any]] = []
        self.listing_error: str | None = None
        self.refresh()

    def refresh(self) -> None:
        try:
            from skinui.zoo import list_entries

            cards = list_entries(self.weights_dir) if self.weights_dir.is_dir() else []
            self.cards = sorted(cards, key=lambda c: (str(c.get("dataset")), str(c.get("name"))))
            self.listing_error = None
        except Exception as err:  # a broken weights folder must not stop the app from starting
            self.cards, self.listing_error = [], f"The model zoo in {self.weights_dir} could not be read: {err}"

    def names(self) -> list[str]:
        return [c["name"] for c in self.cards]

    def card(self, name: str) -> dict[str, Any]:
        for c in self.cards:
            if c["name"] == name:
                return c
        known = ", ".join(self.names()) or "none are installed"
        raise AppError(f"There is no model entry called {name!r}; choose one of: {known}.")

    def default_name(self, preferred: str | None = None) -> str | None:
        """`preferred` if installed, else the best on validation among those taking the most photo inputs."""
        if preferred:
            self.card(preferred)  # raises a sentence when unknown
            return preferred
        if not self.cards:
            return None
        # Among the entries that take the most photo-bearing inputs, the one best on *validation*
        # (never the test split); leaky entries never.
        usable = [c for c in self.cards if not c.get("leaky")] or self.cards
        widest = max((takes_pixels(c), len(c.get("modalities", []))) for c in usable)
        candidates = [c for c in usable if (takes_pixels(c), len(c.get("modalities", []))) == widest]
        return evidence.best_on_validation(candidates) or sorted(c["name"] for c in candidates)[0]

    def _get(self, name: str) -> tuple[Any, threading.Lock]:
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
        self.card(name)
        from skinui.zoo import ZooError, load_entry

        try:
            entry = load_entry(name, self.weights_dir)
        except ZooError as err:
            raise AppError(str(err)) from err
        entry.model.eval()
        for p in entry.model.parameters():  # inference only: gradients flow to inputs/activations
            p.requires_grad_(False)
        with self._lock:
            item = self._loaded.setdefault(name, (entry, threading.Lock()))
            self._loaded.move_to_end(name)
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
        return item

    def preload(self, name: str | None) -> str:
        """Load `name` and the explanation libraries now, so the first analysis is quick; a sentence out."""
        if not name:
            return "no default entry to load"
        import importlib
        import time

        start = time.perf_counter()
        try:
            self._get(name)
            for module in ("skinui.explain.case", "pytorch_grad_cam", "captum.attr"):
                importlib.import_module(module)
        except (AppError, ImportError) as err:
            return f"the default entry {name} could not be loaded: {err}"
        return f"default entry {name} loaded in {time.perf_counter() - start:.1f} s"

    @contextmanager
    def use(self, name: str) -> Iterator[Any]:
        """The loaded `Entry`, held exclusively for the duration of the block."""
        entry, lock = self._get(name)
        with lock:
            yield entry


def read_upload(path: str | None, delete: bool = True) -> np.ndarray | None:
    """Validate an uploaded file into RGB pixels (EXIF dropped) and delete gradio's temp copy."""
    if not path:
        return None
    try:
        return load_image(path)
    finally:
        if delete:
            _delete_temp(path)


def _delete_temp(path: str) -> None:
    """Remove an upload from gradio's cache (never a file outside it) and its empty folder."""
    from gradio.utils import get_upload_folder

    p = Path(path)
    cache = Path(get_upload_folder()).resolve()
    try:
        resolved = p.resolve()
        if cache in resolved.parents:
            resolved.unlink(missing_ok=True)
            if resolved.parent != cache and not any(resolved.parent.iterdir()):
                resolved.parent.rmdir()
    except OSError:
        pass  # an already-removed temp file is the goal anyway


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
    return Case("app-case", dermoscopic=images["dermoscopic"], clinical=images["clinical"], metadata=metadata)


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


__all__ = ["AppError", "CaseInputs", "EntryCache", "ImageError", "build_case", "entry_label",
           "ignored_notes", "modality_notes", "read_upload", "weights_dir_from_env"]
