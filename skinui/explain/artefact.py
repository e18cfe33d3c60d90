"""Is a heatmap on an artefact? Where an artefact was drawn, and the share of a map's weight on it.

SynthDerm renders every case from keyed random streams, and drawing an artefact or not leaves every
other draw of the case unchanged (`skinui.synth.artefacts.apply`), so the same case rendered with and
without an artefact differs exactly where the artefact is. `artefact_mask` turns that difference into
a mask; `band` widens it to a map's own coarseness (a Grad-CAM cell is 16 px at SynthDerm's 128-px
input, far wider than a 1-2 px pen line); `energy_in_mask` (`skinui.explain.measures`) then gives the
share of the map's weight on it, whose floor is the mask's area share (what a uniform map scores).
Arrays in, numbers out.
"""
from __future__ import annotations

import numpy as np

DIFF_THRESHOLD = 16  # of 255, largest channel difference: a pen stroke's faded edge, not grain


def artefact_mask(with_artefact: np.ndarray, without: np.ndarray, threshold: int = DIFF_THRESHOLD) -> np.ndarray:
    """Boolean [H, W]: where the two renders of one case (RGB uint8, same size) differ by more than
    `threshold` in any channel."""
    a, b = np.asarray(with_artefact), np.asarray(without)
    if a.shape != b.shape:
        raise ValueError(f"the two renders differ in shape: {a.shape} and {b.shape}")
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return (diff.max(axis=-1) if diff.ndim == 3 else diff) > threshold


def band(mask: np.ndarray, radius: int) -> np.ndarray:
    """The mask widened by `radius` pixels in every direction (a disc), as booleans."""
    import cv2

    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or not mask.any():
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask brought to the model's input frame (the images' own resize + centre crop)."""
    from skinui.explain.measures import mask_in_input_frame

    mask = np.asarray(mask, dtype=bool)
    if mask.shape == (size, size):
        return mask
    return mask_in_input_frame(mask.astype(np.uint8) * 255, size)
