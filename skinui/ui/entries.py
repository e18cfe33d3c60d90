"""The read-only entry cache every session shares, and the error a user can act on.

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
from pathlib import Path
from typing import Any

from skinui import evidence
from skinui.encoding import shown
from skinui.paths import default_weights_dir
from skinui.ui.cards import pixel_modalities, takes_pixels, usable_modalities
from skinui.vocabulary import IMAGE_MODALITIES

SYNTHETIC = "synthderm"  # the project's own synthetic benchmark: never the default for a real photo


class AppError(ValueError):
    """Something the user can fix; the message is the sentence shown to them."""


class EntryCache:
    """Model cards listed once at start; entries loaded on first use and kept (LRU, read-only)."""

    def __init__(self, weights_dir: str | os.PathLike | None = None, capacity: int = 3) -> None:
        self.weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
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
