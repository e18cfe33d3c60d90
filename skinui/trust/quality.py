"""Image-quality checks on a raw upload: blur, exposure and a lesion too small to see.

`measure` returns raw numbers; `check_image` turns them into plain-language warnings, one sentence
each, saying what is wrong and what to do. Both look at the view the model sees: the centre square
resized to `WORK_SIZE` (the model resizes the shorter side and centre-crops the same way), so the
numbers do not depend on the upload's resolution.

Measures (all on the working view):
- `sharpness`: variance of the Laplacian of the grey image divided by its squared mean, so that
  darkening or brightening a photo alone does not read as blur.
- exposure, in grey levels 0-255 inside the inscribed circle less any black frame that touches the
  border: `highlights` (99th percentile), `mean_luminance`, `dark_share` (pixels at or below
  `DARK_LEVEL`: crushed to black) and `bright_share` (at or above `BRIGHT_LEVEL`: blown out to
  white). Too dark: even the highlights are dark, or many pixels are crushed; not a low mean,
  which mostly measures skin tone (a threshold on it from these mostly light-skinned datasets
  would call photos of dark skin "too dark"). Over-exposed: many pixels blown out, or a mean
  brighter than any skin in good light.
- `lesion_share`: share of the view covered by the estimated lesion, estimated on the view shrunk
  to `LESION_SIZE` (a share does not need the full resolution). Estimate: skin colour is the
  median CIELAB colour of the outer ring (near-black vignette pixels excluded); every pixel's colour
  distance to it (lightness down-weighted, as shading changes lightness more than hue) is cut at
  0.6 of Otsu's threshold (and at least `MIN_CONTRAST`); of the regions that stand out, the one
  with the most centre-weighted area is kept, grown into the fainter pixels connected to it (above
  0.3 of Otsu's threshold) and its holes filled. A crude estimate by design: it only has to tell a
  lesion that fills a fair part of the picture from a speck.

Thresholds (`THRESHOLDS`) are the 0.5th / 99.5th percentiles of each measure over the training
split of a real dataset per modality (bounded by the skin-tone guards below), so each warning fires
on about 1% of normal pictures or fewer; `bench/bench_quality.py` derives them and measures false alarms and detection rates
(docs/BENCHMARKS.md, "Image-quality checks"). Torch-free: numpy and OpenCV (a declared dependency).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

WORK_SIZE = 224  # the model's input side
# The lesion estimate runs on the working view shrunk to this side: its share of the view is the same
# (r = 0.9996 against the full view over 250 HAM10000 / PAD-UFES-20 images; the same images fall below
# each threshold) at a quarter of the pixels, which keeps the check off the prediction's critical path.
LESION_SIZE = 112
MIN_SIDE = 64  # below this many pixels on the shorter side, a lesion's structures are lost (not data-derived)
DARK_LEVEL = 15  # grey level at or below which a pixel counts as crushed to black
BRIGHT_LEVEL = 245  # grey level at or above which a pixel counts as blown out to white
# Skin-tone guards. The real development sets are almost all light skin, so thresholds from them
# alone would call good photos of the darkest skin "too dark": the highlights threshold (their
# 0.5th percentile, 115-141) is capped at DARK_SKIN_GUARD (on SynthDerm's Fitzpatrick VI clinical
# photos a threshold of 90 fires on 11%, 80 on 3%). The mean-luminance threshold for a washed-out
# picture never goes below LIGHT_SKIN_GUARD: the lightest skin in good light averages about 220.
DARK_SKIN_GUARD = 80.0
LIGHT_SKIN_GUARD = 225.0
MIN_CONTRAST = 8.0  # CIELAB distance below which nothing stands out from the skin
_LIGHTNESS_WEIGHT = 0.5  # down-weights lightness (shading) against hue, yet keeps brown-on-brown lesions
_CUT_SHARE = 0.6  # of Otsu's cut: a lesion with a pale or very dark core is otherwise cut at its core
_GROW_SHARE = 0.3  # of Otsu's cut: a faint lesion around strong structures (vessels, dots) joins them
_VIGNETTE_L = 40.0  # CIELAB L (0-255 scale) below which a pixel is the dark frame of a dermatoscope
_RING = 0.1  # outer ring, as a share of the side, that gives the skin colour
_CENTRE_SIGMA = 0.25  # centre weighting (share of the side) when choosing the lesion region
_SMOOTH_SIGMA = 2.0  # pixels at WORK_SIZE (scaled with the side); removes skin texture and noise before segmenting

MODALITIES = ("dermoscopic", "clinical")

# Per modality: lowest sharpness, lowest highlights (capped at DARK_SKIN_GUARD), highest mean
# luminance (at least LIGHT_SKIN_GUARD), highest dark / bright shares (at least 0.02: most pictures
# have no clipped pixel, and a few are no fault) and smallest lesion share. The 0.5th / 99.5th
# percentiles over the training splits of HAM10000 (dermoscopic, 3122 images) and PAD-UFES-20
# (clinical, 333 images), as printed by
#   PYTHONPATH=. .venv/bin/python bench/bench_quality.py --derive
THRESHOLDS: dict[str, dict[str, float]] = {
    "dermoscopic": {
        "sharpness_min": 0.0004194,
        "highlights_min": 80.0,
        "luminance_max": 225.0,
        "dark_share_max": 0.02,
        "bright_share_max": 0.02,
        "lesion_share_min": 0.02789,
    },
    "clinical": {
        "sharpness_min": 0.0002803,
        "highlights_min": 80.0,
        "luminance_max": 225.0,
        "dark_share_max": 0.02,
        "bright_share_max": 0.02261,
        "lesion_share_min": 0.01453,
    },
}


def working_view(image: np.ndarray) -> np.ndarray:
    """The centre square resized to WORK_SIZE x WORK_SIZE (area-averaged when shrinking)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(image[top:top + side, left:left + side])
    interpolation = cv2.INTER_AREA if side > WORK_SIZE else cv2.INTER_LINEAR
    return cv2.resize(square, (WORK_SIZE, WORK_SIZE), interpolation=interpolation)


def grey(view: np.ndarray) -> np.ndarray:
    """Luminance (Rec. 601 weights), float32 0-255."""
    return view.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def sharpness(grey_view: np.ndarray) -> float:
    """Laplacian variance relative to the squared mean brightness (exposure-independent)."""
    lap = cv2.Laplacian(grey_view, cv2.CV_32F)
    mean = max(float(grey_view.mean()), 1.0)  # a black picture: avoid dividing by zero
    return float(lap.var()) / mean**2


@lru_cache(maxsize=4)
def _distance_to_centre(side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    centre = (side - 1) / 2
    dist = np.hypot(yy - centre, xx - centre)
    dist.flags.writeable = False  # cached and shared between calls
    return dist


def _inscribed_disc(side: int) -> np.ndarray:
    return _distance_to_centre(side) <= side / 2


def _frame(grey_view: np.ndarray) -> np.ndarray:
    """Crushed-black regions that touch the border: a dermatoscope's frame or letterbox bars."""
    n, labels = cv2.connectedComponents((grey_view <= DARK_LEVEL).astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(grey_view.shape, dtype=bool)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, edge[edge > 0])


def exposure(grey_view: np.ndarray) -> dict[str, float]:
    """Exposure inside the inscribed circle, leaving out a black frame: a dermatoscope's round field
    of view leaves the corners (sometimes more) black, and that is no exposure fault."""
    region = _inscribed_disc(grey_view.shape[0]) & ~_frame(grey_view)
    if region.sum() < 0.01 * region.size:  # all black: there is nothing but "frame"
        region = _inscribed_disc(grey_view.shape[0])
    levels = grey_view[region]
    return {
        "mean_luminance": float(levels.mean()),
        "highlights": float(np.percentile(levels, 99)),
        "dark_share": float(np.mean(levels <= DARK_LEVEL)),
        "bright_share": float(np.mean(levels >= BRIGHT_LEVEL)),
    }


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of a 1-D sample (between-class variance maximised over 256 bins)."""
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0 / w0 - (m0[-1] - m0) / w1) ** 2 * w0 * w1
    between = np.nan_to_num(between, nan=-1.0)
    return float(centres[int(np.argmax(between))])


def _skin_colour(lab: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Median colour of the outer ring's usable pixels (whole image if the ring has too few)."""
    ring = max(1, int(_RING * lab.shape[0]))
    border = np.ones(lab.shape[:2], dtype=bool)
    border[ring:-ring, ring:-ring] = False
    for region in (border & usable, usable, np.ones_like(usable)):
        if region.sum() >= 16:
            return np.median(lab[region], axis=0)
    return np.median(lab.reshape(-1, 3), axis=0)


@lru_cache(maxsize=4)
def _centre_weights(side: int) -> np.ndarray:
    weights = np.exp(-0.5 * (_distance_to_centre(side) / (_CENTRE_SIGMA * side)) ** 2)
    weights.flags.writeable = False  # cached and shared between calls
    return weights


def _central_region(mask: np.ndarray) -> np.ndarray:
    """The connected region with the most centre-weighted area, holes filled (empty if none)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    mass = np.bincount(labels.ravel(), weights=_centre_weights(mask.shape[0]).ravel(), minlength=n)
    mass[0] = 0.0  # background
    region = (labels == int(np.argmax(mass))).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(region)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    return filled.astype(bool)


def _grow(core: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """`core` plus every connected region of `candidates` that overlaps it (hysteresis)."""
    _, labels = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=8)
    touched = np.unique(labels[core & candidates])
    return core | np.isin(labels, touched[touched > 0])


def lesion_mask(view: np.ndarray) -> np.ndarray:
    """Rough lesion mask of a square view of any side (see the module docstring for the method)."""
    lab = cv2.cvtColor(view, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab = cv2.GaussianBlur(lab, (0, 0), _SMOOTH_SIGMA * view.shape[0] / WORK_SIZE)
    usable = lab[..., 0] > _VIGNETTE_L
    skin = _skin_colour(lab, usable)
    diff = lab - skin
    diff[..., 0] *= _LIGHTNESS_WEIGHT
    dist = np.sqrt((diff**2).sum(axis=-1))
    otsu = _otsu(dist[usable] if usable.sum() >= 16 else dist.ravel())
    core = _central_region((dist > max(_CUT_SHARE * otsu, MIN_CONTRAST)) & usable)
    if not core.any():
        return core
    faint = (dist > max(_GROW_SHARE * otsu, MIN_CONTRAST)) & usable
    return _central_region(_grow(core, faint))


def measure(image: np.ndarray) -> dict[str, float]:
    """Raw quality measures of an RGB uint8 HxWx3 image (see the module docstring)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(f"measure needs an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}.")
    view = working_view(image)
    g = grey(view)
    return {
        "side": float(min(image.shape[:2])),
        "sharpness": sharpness(g),
        **exposure(g),
        "lesion_share": float(lesion_mask(cv2.resize(view, (LESION_SIZE, LESION_SIZE),
                                                     interpolation=cv2.INTER_AREA)).mean()),
    }


def warnings_for(measures: dict[str, float], modality: str,
                 thresholds: dict[str, float] | None = None) -> list[str]:
    """Plain-language warnings for measures from `measure` (`thresholds`: the modality's by default)."""
    if modality not in THRESHOLDS:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, not {modality!r}.")
    t = thresholds or THRESHOLDS[modality]
    subject, trust = f"This {modality} image", "before trusting the prediction"
    out = []
    low_res = measures["side"] < MIN_SIDE  # upscaled: neither blur nor lesion size can be judged
    if low_res:
        out.append(f"{subject} is too small ({measures['side']:.0f} px on its shorter side); upload one at least "
                   f"{MIN_SIDE} px on each side {trust}.")
    elif measures["sharpness"] < t["sharpness_min"]:
        out.append(f"{subject} looks blurred; retake it in focus {trust}.")
    dark = measures["highlights"] < t["highlights_min"] or measures["dark_share"] > t["dark_share_max"]
    bright = measures["mean_luminance"] > t["luminance_max"] or measures["bright_share"] > t["bright_share_max"]
    if dark:
        out.append(f"{subject} is too dark; retake it in better light {trust}.")
    if bright:
        out.append(f"{subject} is over-exposed; retake it with less light or without flash {trust}.")
    # The lesion estimate needs a usable exposure; a bad one is reported (and fixed) first.
    if not (low_res or dark or bright) and measures["lesion_share"] < t["lesion_share_min"]:
        out.append(f"The lesion fills very little of this {modality} image; move closer or crop around it {trust}.")
    return out


def check_image(image: np.ndarray, modality: str) -> list[str]:
    """Warnings for an RGB uint8 image of the given modality ("dermoscopic" or "clinical"); [] if fine."""
    return warnings_for(measure(image), modality)
