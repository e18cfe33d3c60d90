"""Plan and render SynthDerm cases; every random draw is keyed by (seed, lesion, visit, stream).

Keying every stream by position (not by a running generator) makes the output byte-identical for
a seed whatever the number of workers, and makes `--n 100` the first 100 cases of `--n 200`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skinui.synth import artefacts, clinical, dermoscopic, design, metadata
from skinui.synth import palette as P
from skinui.synth.canvas import Ctx, Frame, Shape, View, blur, grain, to_uint8

SPLITS = (("train", 0.7), ("val", 0.85), ("test", 1.0))  # cumulative fractions, drawn per lesion
P_SECOND_VISIT = 0.25  # share of lesions photographed again at a follow-up visit

# stream ids: one independent random stream per purpose
PLAN, LABELS, META, SHAPE, D_LESION, C_LESION, D_VIEW, C_VIEW, D_ART, C_ART, COMPONENT = range(11)


def stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


@dataclass(frozen=True)
class Planned:
    index: int  # case index
    lesion: int
    visit: int  # 1 or 2
    label: str
    split: str

    @property
    def case_id(self) -> str:
        return f"SD{self.index:06d}"

    @property
    def lesion_id(self) -> str:
        return f"SDL{self.lesion:06d}"

    @property
    def patient_id(self) -> str:  # one lesion per patient: grouping by either id is the same
        return f"SDP{self.lesion:06d}"


def lesion_label(seed: int, lesion: int) -> str:
    """Balanced classes: every block of 8 consecutive lesions holds each class once."""
    perm = stream(seed, LABELS, lesion // len(design.CLASSES)).permutation(len(design.CLASSES))
    return design.CLASSES[int(perm[lesion % len(design.CLASSES)])]


def plan(n: int, seed: int) -> list[Planned]:
    cases: list[Planned] = []
    lesion = 0
    while len(cases) < n:
        rng = stream(seed, PLAN, lesion)
        visits = 2 if rng.random() < P_SECOND_VISIT else 1
        u = rng.random()
        split = next(name for name, edge in SPLITS if u < edge)
        label = lesion_label(seed, lesion)
        for visit in range(1, visits + 1):
            if len(cases) < n:
                cases.append(Planned(len(cases), lesion, visit, label, split))
        lesion += 1
    return cases


@dataclass
class Rendered:
    images: dict[str, np.ndarray]  # dermoscopic, clinical: uint8 HxWx3
    masks: dict[str, np.ndarray]  # dermoscopic, clinical: uint8 HxW, 255 = lesion
    metadata: dict[str, Any]  # observed (with holes)
    truth: dict[str, Any]  # ground-truth record (JSON-safe)


def codes_of(p: Planned, seed: int, variant: str = "independent") -> design.Triple:
    """The lesion's (dermoscopic, clinical, metadata) codes: its class's only triple, or one of its
    class's equally likely triples drawn from the lesion's own stream (both visits share it)."""
    comps = design.VARIANTS.get(variant).components[p.label]
    return comps[0] if len(comps) == 1 else comps[int(stream(seed, COMPONENT, p.lesion).integers(len(comps)))]


def render(p: Planned, seed: int, size: int, shortcuts: tuple[artefacts.Shortcut, ...] = (),
           lesion: bool = True, variant: str = "independent") -> Rendered:
    """One case's images, masks and truth; `lesion=False` paints skin and nuisances only (an
    out-of-distribution probe: same camera, no lesion). `variant` picks the design (`design.VARIANTS`)."""
    d_code, c_code, m_code = codes_of(p, seed, variant)
    truth_meta, observed = metadata.sample(stream(seed, META, p.lesion), m_code)
    g = stream(seed, SHAPE, p.lesion)
    shape = Shape.random(g, range(2, 5), (0.04, 0.14))
    elongation, orientation, tone = g.uniform(1.0, 1.35), g.uniform(0, 2 * np.pi), g.uniform()
    d_lesion = stream(seed, D_LESION, p.lesion)
    extra = dermoscopic.border_extra(d_code, d_lesion)
    radius = float(np.clip(0.28 + 0.04 * truth_meta["diameter_mm"], 0.38, 0.7))
    skin = P.SKIN[truth_meta["fitzpatrick"]]

    # dermoscopic view: lesion near the centre, contact plate flattens relief
    vd = stream(seed, D_VIEW, p.lesion, p.visit)
    d_view = View(tuple(vd.normal(0, 0.06, 2)), radius * vd.uniform(0.92, 1.08), orientation + vd.normal(0, 0.6),
                  elongation)
    d_frame = Frame(size, d_view, shape, extra)
    d_img = np.empty((3, size, size), np.float32)
    dermoscopic.skin(d_img, skin, vd)
    d_cues = dermoscopic.PATTERNS.get(d_code)(Ctx(d_img, d_frame, d_lesion, vd, tone)) if lesion else []
    d_art = artefacts.apply(d_img, d_frame, stream(seed, D_ART, p.lesion, p.visit), "dermoscopic", p.label,
                            p.split, shortcuts)
    d_img = blur(d_img, vd.uniform(0.2, 0.6) * size / 224)
    d_img = grain(d_img, vd, 0.008)

    # clinical view: zoomed out, any rotation, oblique, own lighting
    vc = stream(seed, C_VIEW, p.lesion, p.visit)
    c_view = View(tuple(vc.uniform(-0.25, 0.25, 2)), radius * vc.uniform(0.5, 0.75), vc.uniform(0, 2 * np.pi),
                  elongation, vc.uniform(0.75, 1.0), vc.uniform(0, np.pi))
    c_frame = Frame(size, c_view, shape)
    a = vc.uniform(0, 2 * np.pi)
    light = (float(np.cos(a)), float(np.sin(a)))
    c_img = np.empty((3, size, size), np.float32)
    clinical.skin(c_img, skin, vc)
    c_cues = (clinical.APPEARANCES.get(c_code)(Ctx(c_img, c_frame, stream(seed, C_LESION, p.lesion), vc, tone, light))
              if lesion else [])
    c_art = artefacts.apply(c_img, c_frame, stream(seed, C_ART, p.lesion, p.visit), "clinical", p.label,
                            p.split, shortcuts)
    c_img = clinical.photograph(c_img, vc, light)

    truth = {
        "case_id": p.case_id, "lesion_id": p.lesion_id, "label": p.label, "split": p.split, "visit": p.visit,
        "mask": f"masks/{p.case_id}.png", "mask_clinical": f"masks_clinical/{p.case_id}.png",
        "codes": {"dermoscopic": d_code, "clinical": c_code, "metadata": m_code},
        "cues": {"dermoscopic": d_cues, "clinical": c_cues, "metadata": list(design.CUES["metadata"][m_code])},
        "evidence": (design.case_evidence(p.label, (d_code, c_code, m_code), variant)
                     if design.VARIANTS.get(variant).mixed else design.evidence(p.label)),
        "artefacts": {"dermoscopic": d_art, "clinical": c_art},
        "shortcut": sorted(f"{m}:{name}" for m, arts in (("dermoscopic", d_art), ("clinical", c_art))
                           for name, params in arts.items() if params.get("shortcut")),
        "truth_metadata": truth_meta,
        "pigment_tone": round(float(tone), 4),
    }
    if variant != "independent":  # the default's records stay byte-identical to earlier datasets
        truth["variant"] = variant
    return Rendered(
        images={"dermoscopic": to_uint8(d_img), "clinical": to_uint8(c_img)},
        masks={"dermoscopic": ((d_frame.t < 1.0) * 255).astype(np.uint8),
               "clinical": ((c_frame.t < 1.0) * 255).astype(np.uint8)},
        metadata=observed,
        truth=truth,
    )
