"""One-click example cases for the app: synthetic SynthDerm cases and six real ones.

SynthDerm examples are not stored: each is a fixed (seed, case) of SynthDerm's test split, one per
class, rendered in memory in a few milliseconds when clicked; being synthetic, they carry no patient
data and no licence terms, and their ground truth (which modality carries the class evidence) is
known. The real examples are six development-set cases (HAM10000, PAD-UFES-20) from their test
splits, stored in `real/` with their attribution and licence (`real/README.md`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SEED = 2024  # a seed no shipped SynthDerm entry trains on with its default --seed 0
SIZE = 224
CLASSES = ("MEL", "NV", "BCC", "BKL", "AKIEC", "SCCKA", "DF", "VASC")


@dataclass(frozen=True)
class Example:
    title: str
    label: str
    dataset: str
    index: int  # SynthDerm case index for SEED
    images: dict[str, np.ndarray]
    metadata: dict[str, Any]
    truth: dict[str, Any]


@dataclass(frozen=True)
class _Planned:
    title: str
    label: str
    index: int


def _plan() -> list[_Planned]:
    """The first test-split case of each class (cheap: no rendering)."""
    try:
        from skinui.synth.generate import plan
    except ImportError:  # an installation without the generator simply offers no examples
        return []
    firsts: dict[str, int] = {}
    for p in plan(400, SEED):
        if p.split == "test" and p.visit == 1 and p.label not in firsts:
            firsts[p.label] = p.index
    return [_Planned(f"Example {i + 1}: {label}", label, firsts[label])
            for i, label in enumerate(c for c in CLASSES if c in firsts)]


EXAMPLES: list[_Planned] = _plan()


@lru_cache(maxsize=len(CLASSES))
def load_example(i: int) -> Example:
    """Render example `i` (images RGB uint8, observed metadata with its holes)."""
    from skinui.synth.generate import plan, render

    planned = EXAMPLES[i]
    p = plan(planned.index + 1, SEED)[planned.index]
    r = render(p, SEED, SIZE)
    for image in r.images.values():
        image.setflags(write=False)  # cached and shared by every session: read-only
    return Example(planned.title, planned.label, "synthderm", planned.index, r.images, dict(r.metadata), r.truth)


REAL_DIR = Path(__file__).resolve().parent / "real"


def _real() -> list[dict[str, Any]]:
    path = REAL_DIR / "cases.json"
    return json.loads(path.read_text()) if path.is_file() else []


REAL_EXAMPLES: list[dict[str, Any]] = _real()


@lru_cache(maxsize=8)
def load_real_example(i: int) -> Example:
    """Real example `i`: its image (validated like any upload), typed metadata, and its attribution."""
    from skinui.cases import load_image

    rec = REAL_EXAMPLES[i]
    image = load_image(REAL_DIR / rec["image"])
    image.setflags(write=False)  # cached and shared by every session: read-only
    truth = {"licence": rec["licence"], "citation": rec["citation"], "case_id": rec["case_id"]}
    return Example(rec["title"], rec["label"], rec["dataset"], i, {rec["modality"]: image}, dict(rec["metadata"]), truth)
