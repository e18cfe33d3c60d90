"""Image -> tensor preprocessing shared by training, inference and explanations.

`to_tensor` resizes the shorter side, centre-crops and normalises with ImageNet statistics.
`augment_views` gives the CPU fast path's K deterministic views of one image (view 0 = original):
flips and 90-degree rotations first, then the same geometric set with a fixed colour jitter, so
cached stem activations are reproducible run to run.

An entry may also name an image preprocessing in its model config (`model.preprocess`, e.g.
`{name: shades_of_gray_clahe, p: 6, clip: 2.0, tiles: 8}`, registered in `PREPROCESSORS`).
`preprocess_image(img, spec)` applies it to the decoded uint8 RGB image, before anything else:
before training augmentation (full fine-tuning and the fast path's views alike), before the
resize and crop of `to_tensor`, in training, evaluation, the app, the API and the CLI (they all go
through `skinui.inference.Entry.prepare`), as a dataset is preprocessed once, offline, in a paper.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

from skinui.registry import Registry

PREPROCESSORS: Registry = Registry("image preprocessing")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (horizontal flip, quarter turns) in the order views are produced.
_GEOMETRY = [(False, 0), (True, 0), (False, 1), (False, 2), (False, 3), (True, 1), (True, 2), (True, 3)]
# (brightness, contrast, saturation) factors; 1.0 = unchanged.
_JITTER = [(1.0, 1.0, 1.0), (1.1, 0.9, 1.1), (0.9, 1.1, 0.9), (1.05, 1.1, 0.85)]


def resize_crop(img: np.ndarray, size: int = 224) -> np.ndarray:
    """Resize the shorter side to `size` (bilinear) and centre-crop to size x size; uint8 RGB."""
    pil = Image.fromarray(np.ascontiguousarray(img))
    w, h = pil.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    pil = pil.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)))


def normalize(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 [3, H, W] with ImageNet normalisation."""
    t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (t - mean) / std


def to_tensor(img: np.ndarray, size: int = 224, preprocess: Mapping[str, Any] | None = None) -> torch.Tensor:
    """uint8 RGB -> normalised [3, size, size]; `preprocess` (a `model.preprocess` spec) applied first."""
    return normalize(resize_crop(preprocess_image(img, preprocess), size))


# -- per-entry image preprocessing (model.preprocess) ----------------------------------------------
@PREPROCESSORS.register("shades_of_gray")
def shades_of_gray(img: np.ndarray, p: float = 6.0) -> np.ndarray:
    """Shades-of-Gray colour constancy (Finlayson & Trezzi 2004) with Minkowski norm `p`.

    The illuminant is estimated per channel as e_c = (mean_x I_c(x)^p)^(1/p), normalised to unit
    length; each channel is divided by sqrt(3) e_c (a grey illuminant leaves the image unchanged),
    then clipped to [0, 255] and rounded. p = 1 is Grey World, p -> infinity is max-RGB.
    """
    if p <= 0:
        raise ValueError(f"shades_of_gray needs a Minkowski norm p > 0, not {p}.")
    x = np.asarray(img, dtype=np.float64)
    e = np.power(np.mean(np.power(x, p), axis=(0, 1)), 1.0 / p)
    e = e / max(float(np.linalg.norm(e)), 1e-12)
    gain = 1.0 / np.maximum(e * np.sqrt(3.0), 1e-12)
    return np.clip(np.rint(x * gain), 0, 255).astype(np.uint8)


@PREPROCESSORS.register("clahe")
def clahe(img: np.ndarray, clip: float = 2.0, tiles: int = 8, space: str = "lab") -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV), `tiles` x `tiles` grid, clip limit `clip`.

    `space: lab` (default) equalises the lightness channel L of CIELAB only, so hues are kept;
    `space: rgb` equalises each colour channel on its own.
    """
    import cv2

    x = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    eq = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles)))
    if space == "rgb":
        return np.stack([eq.apply(np.ascontiguousarray(x[..., c])) for c in range(3)], axis=-1)
    if space != "lab":
        raise ValueError(f"clahe space must be lab or rgb, not {space!r}.")
    lab = cv2.cvtColor(x, cv2.COLOR_RGB2LAB)
    lab[..., 0] = eq.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


@PREPROCESSORS.register("shades_of_gray_clahe")
def shades_of_gray_clahe(img: np.ndarray, p: float = 6.0, clip: float = 2.0, tiles: int = 8,
                         space: str = "lab") -> np.ndarray:
    """Shades-of-Gray colour constancy, then CLAHE (DualRefNet's preprocessing)."""
    return clahe(shades_of_gray(img, p), clip, tiles, space)


def preprocess_image(img: np.ndarray, spec: Mapping[str, Any] | None) -> np.ndarray:
    """`img` (uint8 RGB) through the `model.preprocess` spec `{name: ..., **options}`; unchanged when None."""
    if not spec:
        return img
    options = dict(spec)
    fn = PREPROCESSORS.get(options.pop("name", ""))
    return fn(np.ascontiguousarray(img), **options)


def jitter(img: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    x = img.astype(np.float32) * brightness
    x = (x - x.mean()) * contrast + x.mean()
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * saturation + grey
    return np.clip(x, 0, 255).astype(np.uint8)


def augment_views(img: np.ndarray, k: int) -> list[np.ndarray]:
    """K deterministic uint8 views of `img` (same size as `img` up to 90-degree rotation)."""
    views = []
    for i in range(k):
        flip, turns = _GEOMETRY[i % len(_GEOMETRY)]
        v = img[:, ::-1] if flip else img
        v = np.rot90(v, turns)
        colour = _JITTER[(i // len(_GEOMETRY)) % len(_JITTER)]
        views.append(np.ascontiguousarray(jitter(v, *colour) if colour != (1.0, 1.0, 1.0) else v))
    return views
