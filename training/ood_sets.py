"""Images that are not what an entry was trained on, for measuring its out-of-distribution detector.

Every set is built offline from what is installed or on disk (no download):
- `natural`: scikit-image's and matplotlib's sample photographs (cat, coffee, astronaut, rocket,
  Grace Hopper, ...) and crops of them: what a hosted demo receives instead of a lesion;
- `faces`: scikit-image's LFW face crops (grey, upscaled);
- `documents`: screenshots of text and page scans (scikit-image's text and page images, plus
  rendered text on a plain background);
- `synthetic-skin`: SynthDerm's camera with skin and nuisances (hair, rulers, bubbles) but no lesion;
- `other-modality` / `other-dataset`: the lesions of another dataset or modality (clinical close-ups
  fed to a dermoscopic entry and the reverse; real photos to a SynthDerm entry and the reverse).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

NATURAL = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field", "immunohistochemistry",
           "retina", "colorwheel", "brick", "grass", "gravel", "horse", "camera", "moon", "coins")
DOCUMENTS = ("text", "page")


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) - img.min()) / max(float(np.ptp(img)), 1e-9)).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _skimage(names: tuple[str, ...]) -> list[np.ndarray]:
    from skimage import data

    found = []
    for name in names:
        try:
            found.append(_rgb(getattr(data, name)()))
        except Exception:  # noqa: BLE001 - an image that needs a download is simply left out
            continue
    return found


def _crops(images: list[np.ndarray], per_image: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random square crops (40-90% of the short side): more, and more varied, non-lesion inputs."""
    out = []
    for img in images:
        h, w = img.shape[:2]
        for _ in range(per_image):
            s = int(min(h, w) * rng.uniform(0.4, 0.9))
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            out.append(img[y:y + s, x:x + s])
    return out


def natural(rng: np.random.Generator) -> list[np.ndarray]:
    import matplotlib

    images = _skimage(NATURAL)
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if hopper.is_file():
        images.append(_rgb(np.asarray(Image.open(hopper).convert("RGB"))))
    return images + _crops(images, 4, rng)


def faces(rng: np.random.Generator, n: int = 60) -> list[np.ndarray]:
    from skimage import data

    lfw = data.lfw_subset()
    return [_rgb(lfw[i]) for i in rng.choice(len(lfw), size=min(n, len(lfw)), replace=False)]


def documents(rng: np.random.Generator, n: int = 40) -> list[np.ndarray]:
    words = ("Patient", "record", "Analyse", "upload", "dermatology", "clinic", "report", "2026", "SkinUI",
             "Settings", "OK", "Cancel", "lesion", "notes", "appointment")
    out = _skimage(DOCUMENTS)
    for _ in range(n):
        bg = tuple(int(v) for v in rng.integers(200, 256, 3))
        img = Image.new("RGB", (int(rng.integers(300, 700)), int(rng.integers(200, 500))), bg)
        draw = ImageDraw.Draw(img)
        for row in range(int(rng.integers(4, 14))):
            line = " ".join(rng.choice(words, size=int(rng.integers(2, 7))))
            draw.text((10, 10 + 18 * row), line, fill=tuple(int(v) for v in rng.integers(0, 90, 3)))
        if rng.uniform() < 0.5:  # a button or a window frame, as in a screenshot
            x, y = int(rng.integers(10, 200)), int(rng.integers(10, 150))
            draw.rectangle((x, y, x + 120, y + 40), outline=(40, 40, 40), fill=(220, 225, 235))
        out.append(np.asarray(img))
    return out


def synthetic_skin(modality: str, n: int = 60, seed: int = 7, size: int = 128) -> list[np.ndarray]:
    from skinui.synth.generate import plan, render

    return [render(p, seed, size, lesion=False).images[modality] for p in plan(n, seed)[:n]]


def generic(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """The non-lesion sets every image entry is measured on."""
    return {"natural": natural(rng), "faces": faces(rng), "documents": documents(rng)}
