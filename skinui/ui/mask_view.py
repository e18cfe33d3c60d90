"""The lesion mask an entry's own segmenter predicted (TDBN), shown beside its Grad-CAM panel.

`predicted_mask` returns the array (the mask the model itself used to build its second stream, in
its input frame); `picture` and `beside` draw it; `caption` says what it is and how well the
segmenter scored on held-out images (the card's `segmenter` block). Entries without a segmenter
are left exactly as they were.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

GAP = 6


def has_segmenter(card: dict[str, Any] | None) -> bool:
    """Does the entry's image encoder carry a lesion segmenter (read from its card, no model load)?"""
    return bool(((card or {}).get("model") or {}).get("image_encoder", {}).get("segmenter"))


def predicted_mask(enc: Any, modality: str) -> np.ndarray | None:
    """Binary mask [H, W] (the model's input frame) from the entry's segmenter; None without one or an image."""
    import torch

    encoder = enc.entry.model.image_encoders.get(modality)
    x = enc.batch.get(modality)
    if encoder is None or getattr(encoder, "segmenter", None) is None or x is None or x.ndim != 4:
        return None
    if modality in (enc.batch.get("mask") or {}) and not bool(enc.batch["mask"][modality][0]):
        return None
    with torch.no_grad():
        return encoder.segmenter.mask(x[:1])[0, 0].numpy() > 0.5


def picture(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the outside of the mask dimmed and the mask's outline drawn in green."""
    h, w = image.shape[:2]
    m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    out = np.uint8(image.astype(np.float32) * (0.35 + 0.65 * m[..., None]))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.ascontiguousarray(out)
    cv2.drawContours(out, contours, -1, (0, 220, 0), max(1, round(min(h, w) / 150)))
    return out


def beside(ctx: Any, name: str | None, session: Any, modality: str, image: np.ndarray,
           panel: np.ndarray) -> np.ndarray:
    """`panel` with the predicted mask picture appended on its right (unchanged without a segmenter)."""
    if not name or not has_segmenter(ctx.cache.card(name)):
        return panel
    from skinui.ui.entries import AppError
    from skinui.ui.session import encoded_case

    try:
        with encoded_case(ctx.cache, session, name) as enc:
            mask = predicted_mask(enc, modality)
    except (AppError, ValueError):
        return panel
    if mask is None:
        return panel
    gap = np.full((panel.shape[0], GAP, 3), 255, dtype=np.uint8)
    return np.hstack([panel, gap, picture(image, mask)])


def caption(card: dict[str, Any] | None) -> str:
    """One sentence on the rightmost picture, with the segmenter's held-out Dice where the card has it."""
    if not has_segmenter(card):
        return ""
    block = (card or {}).get("segmenter") or {}
    test = block.get("test") or {}
    dice = (test.get("dice") or {})
    score = ""
    if dice.get("estimate") is not None:
        lo, hi = dice.get("ci") or (None, None)
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        score = (f" On {test.get('n_images', '?')} held-out test images its outlines overlap the hand-drawn masks "
                 f"with Dice {dice['estimate']:.2f}{ci}.")
    return (" Rightmost: the lesion outline the entry's own segmenter predicted (green; the area outside dimmed). "
            "The model's second image stream sees only what is inside it." + score)
