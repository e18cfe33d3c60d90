"""Class-independent nuisances: hair, ruler marks, vignetting, gel bubbles, pen marks.

Each artefact has a probability per image modality and a painter. Whether an artefact appears is
decided from its own draw, so turning a shortcut on (`Shortcut`) changes only that decision for
the tied class in the training split, never the rest of a case.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from skinui.registry import Registry
from skinui.synth import palette as P
from skinui.synth.canvas import Frame, draw_circles, draw_polylines, grid, layer, paint, smoothstep

ArtefactPainter = Callable[[np.ndarray, Frame, np.random.Generator, str], dict[str, Any]]


@dataclass(frozen=True)
class Artefact:
    paint: ArtefactPainter
    p: dict[str, float]  # probability per image modality (absent = never)
    description: str


ARTEFACTS: Registry[Artefact] = Registry("artefact")
ORDER = ("hair", "bubbles", "ruler", "pen", "vignette")  # drawing order (vignette last: it is the optics)


def _register(name: str, p: dict[str, float], description: str) -> Callable[[ArtefactPainter], ArtefactPainter]:
    def deco(fn: ArtefactPainter) -> ArtefactPainter:
        ARTEFACTS.register(name)(Artefact(fn, p, description))
        return fn
    return deco


def _thick(size: int, base: float) -> int:
    return max(1, round(base * size / 224))


@_register("hair", {"dermoscopic": 0.35, "clinical": 0.15}, "dark or fair hairs crossing the field")
def hair(img: np.ndarray, frame: Frame, rng: np.random.Generator, modality: str) -> dict[str, Any]:
    S, n = img.shape[-1], int(rng.integers(2, 12))
    s = np.linspace(0, 1, 10)[:, None]
    lines = []
    for _ in range(n):
        a, b = rng.uniform(-1.2, 1.2, 2), rng.uniform(0, 2 * np.pi)
        end = a + rng.uniform(0.5, 1.6) * np.array([np.cos(b), np.sin(b)])
        ctrl = (a + end) / 2 + rng.normal(0, 0.2, 2)
        curve = (1 - s) ** 2 * a + 2 * (1 - s) * s * ctrl + s ** 2 * end
        lines.append((curve + 1) * S / 2)
    lay = layer(S)
    draw_polylines(lay, lines, thickness=_thick(S, rng.uniform(1.0, 2.2)))
    paint(img, P.HAIR_DARK if rng.random() < 0.75 else P.HAIR_LIGHT, lay * 0.9)
    return {"count": n}


@_register("bubbles", {"dermoscopic": 0.25}, "air bubbles in the immersion gel")
def bubbles(img: np.ndarray, frame: Frame, rng: np.random.Generator, modality: str) -> dict[str, Any]:
    S, n = img.shape[-1], int(rng.integers(1, 7))
    centres = rng.uniform(0.05, 0.95, (n, 2)) * S
    radii = rng.uniform(0.02, 0.08, n) * S
    inner, rim = layer(S), layer(S)
    draw_circles(inner, centres, radii)
    draw_circles(rim, centres, radii, thickness=_thick(S, 1.5))
    paint(img, P.WHITE, inner * 0.15 + rim * 0.7)
    return {"count": n}


@_register("ruler", {"dermoscopic": 0.12, "clinical": 0.2}, "a millimetre ruler along one edge")
def ruler(img: np.ndarray, frame: Frame, rng: np.random.Generator, modality: str) -> dict[str, Any]:
    S = img.shape[-1]
    side = int(rng.integers(0, 4))
    depth = rng.uniform(0.06, 0.1) * S
    step = S / rng.uniform(18, 30)
    pos = np.arange(rng.uniform(0, step), S, step)
    long = (np.arange(len(pos)) % 5 == 0) * 0.6 * depth + 0.35 * depth
    ticks = [np.array([[p, 0.0], [p, ln]]) for p, ln in zip(pos, long)]
    band, marks = layer(S), layer(S)
    band[: int(depth * 1.05)] = 1.0
    draw_polylines(marks, ticks, thickness=_thick(S, 1.0))
    if side:  # the same ruler on another edge
        band, marks = np.rot90(band, side).copy(), np.rot90(marks, side).copy()
    paint(img, P.WHITE, band * 0.55)
    paint(img, P.BLACK, marks * 0.85)
    return {"side": ["top", "left", "bottom", "right"][side]}


@_register("pen", {"dermoscopic": 0.08, "clinical": 0.1}, "a surgical-marker arc or dots around the lesion")
def pen(img: np.ndarray, frame: Frame, rng: np.random.Generator, modality: str) -> dict[str, Any]:
    S = img.shape[-1]
    a0 = rng.uniform(0, 2 * np.pi)
    arc = np.linspace(a0, a0 + rng.uniform(1.5, 5.0), 24)
    r = rng.uniform(1.35, 1.6) * (1 + rng.normal(0, 0.03, arc.size))
    uv = np.stack([r * np.cos(arc), r * np.sin(arc)], 1)
    lay = layer(S)
    draw_polylines(lay, [frame.to_px(uv)], thickness=_thick(S, rng.uniform(2.0, 3.5)))
    paint(img, P.INK, lay * 0.85)
    return {"shape": "arc"}


@_register("vignette", {"dermoscopic": 0.4, "clinical": 0.15}, "the dermatoscope's dark circular surround / lens fall-off")
def vignette(img: np.ndarray, frame: Frame, rng: np.random.Generator, modality: str) -> dict[str, Any]:
    gx, gy = grid(img.shape[-1])
    rho = np.sqrt(gx * gx + gy * gy)
    if modality == "dermoscopic":
        radius = rng.uniform(0.95, 1.3)
        paint(img, (0.02, 0.02, 0.02), smoothstep(radius - 0.04, radius + 0.04, rho))
        return {"radius": round(float(radius), 3)}
    k = rng.uniform(0.12, 0.3)
    img *= 1.0 - k * rho * rho
    return {"strength": round(float(k), 3)}


@dataclass(frozen=True)
class Shortcut:
    """Tie `artefact` to class `label` in `modality`, in the training split only."""

    artefact: str
    label: str
    modality: str = "dermoscopic"

    @staticmethod
    def parse(text: str, classes: tuple[str, ...]) -> Shortcut:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"--shortcut {text!r} should look like ARTEFACT:CLASS or ARTEFACT:CLASS:MODALITY, "
                             "for example pen:MEL.")
        artefact, label = parts[0].strip().lower(), parts[1].strip().upper()
        modality = parts[2].strip().lower() if len(parts) == 3 else "dermoscopic"
        if artefact not in ARTEFACTS:
            raise ValueError(f"Unknown artefact {artefact!r} in --shortcut; choose one of {', '.join(ARTEFACTS.names())}.")
        if label not in classes:
            raise ValueError(f"Unknown class {label!r} in --shortcut; choose one of {', '.join(classes)}.")
        if modality not in ARTEFACTS.get(artefact).p:
            raise ValueError(f"The {artefact} artefact is never drawn on {modality} images; choose "
                             f"{' or '.join(ARTEFACTS.get(artefact).p)}.")
        return Shortcut(artefact, label, modality)

    def __str__(self) -> str:
        return f"{self.artefact}:{self.label}:{self.modality}"


def apply(img: np.ndarray, frame: Frame, rng: np.random.Generator, modality: str, label: str, split: str,
          shortcuts: tuple[Shortcut, ...] = ()) -> dict[str, Any]:
    """Draw this image's artefacts; returns {name: params} with 'shortcut': True where forced."""
    drawn: dict[str, Any] = {}
    for name in ORDER:
        spec = ARTEFACTS.get(name)
        present = rng.random() < spec.p.get(modality, 0.0)
        sub = np.random.default_rng(rng.integers(0, 2**63))  # painter's own stream: forcing keeps others aligned
        forced = [s for s in shortcuts if s.artefact == name and s.modality == modality and split == "train"]
        if forced:
            present = any(s.label == label for s in forced)
        if present:
            drawn[name] = {**spec.paint(img, frame, sub, modality), **({"shortcut": True} if forced else {})}
    return drawn
