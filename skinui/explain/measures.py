"""Is a heatmap on the lesion? Measures of Grad-CAM against a lesion mask, and the baselines that
give them meaning (a number is only informative next to what a map that knows nothing scores).

- `energy_in_mask(cam, mask)`: the share of the map's total weight that falls inside the lesion;
  a uniform map scores the lesion's area share, so compare with `mask.mean()`.
- `pointing_game(cam, mask)`: whether the map's maximum lies inside the lesion.
- `centre_baseline(shape)`: a centred Gaussian (lesions are usually photographed in the middle),
  the map to beat.
Masks are brought into the model's input frame with the very resize + centre crop the images get,
so a map and its mask line up pixel for pixel. Arrays in, numbers out (the explain layer's habit).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from skinui.cases import Case, ImageRef
from skinui.models.preprocess import resize_crop


def mask_in_input_frame(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary mask [size, size] after the images' own resize + centre crop."""
    m = np.asarray(mask)
    m = m[..., 0] if m.ndim == 3 else m
    rgb = np.repeat(((m > 127) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return resize_crop(rgb, size)[..., 0] > 127


def case_mask(case: Case, modality: str) -> np.ndarray | None:
    """The lesion mask of `modality` (datasets keep a second image's mask as `extra["mask_<modality>"]`;
    `case.mask` belongs to the case's only image, or to the dermoscopic one when it has both)."""
    ref = case.extra.get(f"mask_{modality}")
    if ref is None:
        images = [m for m in ("dermoscopic", "clinical") if getattr(case, m) is not None]
        owner = images[0] if len(images) == 1 else "dermoscopic"
        ref = case.mask if modality == owner else None
    if ref is None:
        return None
    if isinstance(ref, ImageRef):
        from PIL import Image

        with Image.open(ref.path) as img:
            return np.asarray(img.convert("L"))
    return np.asarray(ref)


def energy_in_mask(cam: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the map's weight inside the mask (None for an all-zero map: it points nowhere)."""
    cam = np.clip(np.asarray(cam, dtype=np.float64), 0, None)
    total = cam.sum()
    return float((cam * mask).sum() / total) if total > 0 else None


def pointing_game(cam: np.ndarray, mask: np.ndarray) -> bool | None:
    """Is the map's maximum inside the mask? (None for a flat map.)"""
    cam = np.asarray(cam)
    if float(np.ptp(cam)) <= 0:
        return None
    return bool(mask.flat[int(cam.argmax())])


def centre_baseline(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """A centred Gaussian with standard deviation `sigma` x the side: the map to beat."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    return np.exp(-(((y - (h - 1) / 2) / (sigma * h)) ** 2 + ((x - (w - 1) / 2) / (sigma * w)) ** 2) / 2)


def summarise(rows: list[dict[str, Any]], n_boot: int = 2000) -> dict[str, Any]:
    """Means over cases of energy, pointing and lesion area, for the map and the centre baseline, with
    95% bootstrap intervals over each row's `group` (lesion or patient; the row itself without one)
    for the map's energy and pointing and for its paired margins over the centre baseline."""
    from skinui.stats import bootstrap_mean

    def mean(key: str) -> float | None:
        vals = [float(r[key]) for r in rows if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    def minus(r: dict[str, Any], key: str) -> float | None:
        return None if r.get(key) is None else float(r[key]) - float(r[f"centre_{key}"])

    out: dict[str, Any] = {
        "n": len(rows), "energy_in_lesion": mean("energy"), "pointing_game": mean("pointing"),
        "lesion_area": mean("area"), "centre_energy_in_lesion": mean("centre_energy"),
        "centre_pointing_game": mean("centre_pointing"), "flat_maps": sum(r.get("energy") is None for r in rows)}
    if not rows:
        return out
    groups = [r.get("group", i) for i, r in enumerate(rows)]
    boot = {name: bootstrap_mean(values, groups, n_boot) for name, values in (
        ("energy_in_lesion", [r.get("energy") for r in rows]), ("pointing_game", [r.get("pointing") for r in rows]),
        ("energy_minus_centre", [minus(r, "energy") for r in rows]),
        ("pointing_minus_centre", [minus(r, "pointing") for r in rows]))}
    out.update({"energy_in_lesion_ci": boot["energy_in_lesion"]["ci"], "pointing_game_ci": boot["pointing_game"]["ci"],
                "energy_minus_centre": {k: boot["energy_minus_centre"][k] for k in ("estimate", "ci")},
                "pointing_minus_centre": {k: boot["pointing_minus_centre"][k] for k in ("estimate", "ci")},
                "n_groups": boot["energy_in_lesion"]["n_groups"], "interval": INTERVAL})
    return out


INTERVAL = "95% percentile bootstrap over lesions/patients (2000 replicates)"
