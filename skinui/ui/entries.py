"""The read-only entry cache every session shares, and the error a user can act on.

Nothing here holds per-user state. Entries are loaded once and cached (LRU) for every session; a
per-entry lock serialises use of one model because explanation hooks (Grad-CAM) attach to its
modules, and two CPU cores gain nothing from running one model twice at once anyway.

A weights folder with a broken entry (unreadable card, a name that is not a plain name, a weight,
shared or out-of-distribution file that is missing, outside the folder, not safetensors or not
matching the SHA-256 of its card) still serves the others: the broken one is left out of `cards`
and listed in `broken` with the sentence saying why (the Case and About tabs and the log show it).
The check at start hashes each weight file once (under 0.1 s for the shipped 92 MB);
`zoo.load_entry` verifies again when it loads.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skinui import evidence
from skinui.encoding import shown
from skinui.paths import default_weights_dir
from skinui.ui.cards import pixel_modalities, takes_pixels, usable_modalities
from skinui.vocabulary import IMAGE_MODALITIES

SYNTHETIC = "synthderm"  # the project's own synthetic benchmark: never the default for a real photo


log = logging.getLogger("skinui")


class AppError(ValueError):
    """Something the user can fix; the message is the sentence shown to them."""


def _sha256(path: Path, memo: dict[Path, str]) -> str:
    if path not in memo:
        with open(path, "rb") as fh:
            memo[path] = hashlib.file_digest(fh, "sha256").hexdigest()
    return memo[path]


def entry_problem(card: dict[str, Any], folder: Path, memo: dict[Path, str] | None = None) -> str | None:
    """Why the entry of `card` in `folder` cannot be loaded (a sentence), or None when its files are sound.

    The same checks `zoo.load_entry` makes before it reads a tensor, run once at start so a broken
    entry is named in the app instead of failing when someone picks it. `memo`: digests already
    computed (entries sharing one backbone file hash it once).
    """
    from skinui.zoo import NAME_RE

    name = card.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        return (f"the model card names the entry {shown(str(name))}, which is not a plain entry name (letters, "
                f"digits, '_', '-', '.'); rename it or remove the card.")
    if not (folder / f"{name}.json").is_file():
        return f"its model card is not stored as {name}.json; rename the card file to match the entry name."
    files = [(Path(f"{name}.safetensors"), card.get("sha256"), "weight file")]
    parts = [(p, "shared weight file") for p in card.get("shared") or []]
    parts += [(p, "out-of-distribution file") for p in (card.get("ood") or {}).values()]
    for part, what in parts:
        part = part if isinstance(part, dict) else {}
        files.append((Path(str(part.get("file", ""))), part.get("sha256"), what))
    for rel, expected, what in files:
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            return f"its model card points outside the weights folder ({rel}), so it was refused; remove the card."
        path = folder / rel
        if not path.is_file():
            return f"its {what} {rel.as_posix()} is missing; restore it or remove the entry's card."
        try:
            found = _sha256(path, memo if memo is not None else {})
        except OSError as err:
            return f"its {what} {rel.as_posix()} cannot be read ({err.strerror}); restore it."
        if found != expected:
            return (f"its {what} {rel.as_posix()} does not match the SHA-256 in its model card (modified or "
                    f"corrupted), so it was not loaded; restore the original file or retrain the entry.")
        if not _is_safetensors(path):
            return (f"its {what} {rel.as_posix()} is not a safetensors file (e.g. a pickled checkpoint renamed), "
                    f"so it was not loaded; only safetensors weights are accepted.")
    return None


def _is_safetensors(path: Path) -> bool:
    """The file opens as safetensors: its header alone is parsed (JSON), nothing is unpickled."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError):
        return False
    return True


class EntryCache:
    """Model cards listed once at start; entries loaded on first use and kept (LRU, read-only)."""

    def __init__(self, weights_dir: str | os.PathLike | None = None, capacity: int = 3) -> None:
        self.weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
        self.capacity = capacity
        self._loaded: OrderedDict[str, tuple[Any, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()
        self.cards: list[dict[str, Any]] = []
        self.listing_error: str | None = None
        self.broken: dict[str, str] = {}  # entry (or card file) name -> why it cannot be used
        self.refresh()

    def refresh(self) -> None:
        self.broken = {}
        try:
            from skinui.zoo import list_entries

            with warnings.catch_warnings(record=True) as caught:  # one per unreadable card
                warnings.simplefilter("always")
                cards = list_entries(self.weights_dir) if self.weights_dir.is_dir() else []
            listed = {str(c.get("name")) for c in cards}
            for path in sorted(self.weights_dir.glob("*.json")) if self.weights_dir.is_dir() else []:
                if path.stem not in listed:
                    said = [str(w.message) for w in caught if path.name in str(w.message)]
                    self.broken[path.stem] = said[0] if said else f"The model card {path.name} cannot be read."
            good, memo = [], {}
            for card in cards:
                problem = entry_problem(card, self.weights_dir, memo)
                if problem:
                    self.broken[str(card.get("name"))] = problem
                else:
                    good.append(card)
            self.cards = sorted(good, key=lambda c: (str(c.get("dataset")), str(c.get("name"))))
            self.listing_error = None
        except Exception as err:  # a broken weights folder must not stop the app from starting
            self.cards, self.listing_error = [], f"The model zoo in {self.weights_dir} could not be read: {err}"
        for name, why in self.broken.items():
            log.warning("SkinUI: entry %s is broken and not offered: %s", shown(name), why)

    def names(self) -> list[str]:
        return [c["name"] for c in self.cards]

    def broken_lines(self) -> list[str]:
        """'name: why' for every broken entry of the folder (empty when all are sound)."""
        return [f"{shown(name)}: {why}" for name, why in sorted(self.broken.items())]

    def card(self, name: str) -> dict[str, Any]:
        for c in self.cards:
            if c["name"] == name:
                return c
        if isinstance(name, str) and name in self.broken:
            raise AppError(f"The model entry {shown(name)} is broken and cannot be used: {self.broken[name]}")
        known = ", ".join(self.names()) or "none are installed"
        # the name is quoted cut short: a 5,000-character name must not become a 5,000-character message
        raise AppError(f"There is no model entry called {shown(name)}; choose one of: {known}.")

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

    def default_for(self, present: list[str]) -> str | None:
        """The entry an empty entry name means for a case with these inputs.

        A real photo goes to a real-data entry that reads it (dermoscopic -> HAM10000, clinical ->
        PAD-UFES-20, whichever covers more of the inputs given; then the best on validation), never to
        a model of the synthetic SynthDerm benchmark. None when no real-data entry reads the photos
        given (or none is given): the caller's default answers.
        """
        photos = [m for m in present if m in IMAGE_MODALITIES]
        real = [c for c in self.cards if not c.get("leaky") and c.get("dataset") != SYNTHETIC
                and any(m in pixel_modalities(c) for m in photos)]
        if not real:
            return None  # the caller's default (the app's start-up entry) then answers
        covered = lambda c: sum(m in usable_modalities(c) for m in present)  # noqa: E731
        best_cover = max(covered(c) for c in real)
        # ties between datasets: the dermoscopic one (dermoscopy is what these models read best)
        top = [c for c in real if covered(c) == best_cover]
        first = min(top, key=lambda c: IMAGE_MODALITIES.index(pixel_modalities(c)[0]))["dataset"]
        candidates = [c for c in top if c["dataset"] == first]
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
        except ZooError as err:  # a forged or broken weight file included: a sentence
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
