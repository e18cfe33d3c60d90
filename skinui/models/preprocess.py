"""Image -> tensor preprocessing shared by training, inference and explanations.

`to_tensor` resizes the shorter side, centre-crops and normalises with ImageNet statistics.
`augment_views` gives the CPU fast path's K deterministic views of one image (view 0 = original):
flips and 90-degree rotations first, then the same geometric set with a fixed colour jitter, so
cached stem activations are reproducible run to run.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

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


def to_tensor(img: np.ndarray, size: int = 224) -> torch.Tensor:
    return normalize(resize_crop(img, size))


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
