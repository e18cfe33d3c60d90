"""The one currency of SkinUI: a `Case` (one lesion), plus safe image loading.

Every dataset adapter yields Cases and everything downstream consumes them, so nothing past
`skinui.datasets` knows a dataset's file layout. Images may be held lazily (`ImageRef`, a path
read on demand), in memory (an RGB uint8 array) or, for datasets released without pixels
(MILK10k's MONET scores), as a `ConceptVector`: typed so no code mistakes it for an image.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from skinui.vocabulary import IMAGE_MODALITIES, MODALITIES, SHORT  # noqa: F401  (re-exported)

# Limits for anything a user or a dataset hands us. 40 MP stops decompression bombs long before
# memory is at risk; 32 px is the smallest image on which a 224-px model sees anything at all.
MAX_PIXELS = 40_000_000
MIN_SIDE = 32
MAX_FILE_BYTES = 50 * 1024 * 1024


class ImageError(ValueError):
    """An image we refuse; the message is a sentence a user can act on."""


@dataclass(frozen=True)
class ConceptVector:
    """Per-image concept scores standing in for the pixels (e.g. MILK10k MONET)."""

    values: np.ndarray  # float32 [n_concepts]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.names):
            raise ValueError("concept values and names differ in length")


@dataclass(frozen=True)
class ImageRef:
    """A lazily read image file; `load()` validates and returns RGB uint8 HxWx3."""

    path: Path

    def load(self) -> np.ndarray:
        return load_image(self.path)

    def exists(self) -> bool:
        return self.path.is_file()


ImageLike = ImageRef | np.ndarray | ConceptVector | None


@dataclass
class Case:
    case_id: str
    dermoscopic: ImageLike = None
    clinical: ImageLike = None
    metadata: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    lesion_id: str | None = None
    patient_id: str | None = None
    mask: ImageLike = None  # lesion mask (uint8 HxW, 255 = lesion) where a dataset has one
    extra: dict[str, Any] = field(default_factory=dict)  # dataset-specific (e.g. Derm7pt criteria)

    def modalities(self) -> list[str]:
        """Modalities this case carries (metadata counts when any field is present)."""
        have = [m for m in IMAGE_MODALITIES if getattr(self, m) is not None]
        if any(v is not None for v in self.metadata.values()):
            have.append("metadata")
        return have

    def image(self, modality: str) -> np.ndarray | ConceptVector | None:
        """The modality's pixels (RGB uint8) or concept vector, loading lazily."""
        value = getattr(self, modality)
        if isinstance(value, ImageRef):
            return value.load()
        return value

    def group(self, key: str) -> str:
        """Grouping id for splits ('lesion_id' or 'patient_id'); falls back to the case id."""
        value = getattr(self, key, None)
        return str(value) if value is not None else self.case_id


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: 16-bit and float greys are rescaled, alpha is flattened on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_image(source: str | os.PathLike | bytes | np.ndarray | Image.Image) -> np.ndarray:
    """Read and validate an image; returns RGB uint8 HxWx3 with EXIF (GPS included) discarded.

    Orientation from EXIF is applied first, then only pixels are kept: nothing of the file's
    metadata survives into the array. Raises `ImageError` with an actionable sentence.
    """
    if isinstance(source, np.ndarray):
        return _validate_array(source)
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"The image file {path.name} was not found; please upload it again.")
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ImageError("The image file is larger than 50 MB; please upload a smaller image.")
            data = path.read_bytes()
        if not data:
            raise ImageError("The uploaded file is empty; please choose an image file (JPEG or PNG).")
        try:
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(
                    f"The image is {w}x{h} pixels, too large to analyse safely; please resize it "
                    "below 40 megapixels."
                )
            img.load()
        except ImageError:
            raise
        except Image.DecompressionBombError:
            raise ImageError("The image is too large to analyse safely; please resize it below 40 megapixels.") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise ImageError("This file is not a readable image; please upload a JPEG or PNG photograph.") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block must not cost the user the image
        pass
    return _validate_array(np.asarray(_to_rgb(img)))


def _validate_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError("The image has an unsupported layout; please upload an ordinary colour photograph.")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 4:
        arr = np.asarray(_to_rgb(Image.fromarray(arr.astype(np.uint8), mode="RGBA")))
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        if a.max() <= 1.0:
            a = a * 255.0
        elif a.max() > 255.0:
            a = a / a.max() * 255.0
        arr = np.clip(a, 0, 255).astype(np.uint8)
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"The image is only {w}x{h} pixels; please upload one at least {MIN_SIDE} pixels on each side.")
    if h * w > MAX_PIXELS:
        raise ImageError("The image is too large to analyse safely; please resize it below 40 megapixels.")
    return np.ascontiguousarray(arr)
