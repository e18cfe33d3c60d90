"""Is a heatmap faithful to the model? Deletion and insertion curves, against a random order.

Deletion (Petsiuk et al., RISE, 2018): replace the most salient pixels first by a baseline, in
`steps` equal fractions, and track the calibrated probability of the explained class; a map that
finds what the model uses makes it fall fast (low area under the curve). Insertion: start from the
baseline and reveal the most salient pixels first; the probability should rise fast (high area).
A number means something only next to a map that knows nothing, so the same curves are taken for
random maps (mean over seeds); a faithful map has a lower deletion and a higher insertion area.

- Baseline `"blur"` (default): a heavily blurred copy of the same image (Gaussian, sigma = side/16).
  It keeps the colours and removes the detail without drawing a new edge or shape, which a black
  or grey patch would do (the model would then react to the patch, not to what was removed).
  `"mean"`: a flat image of the image's own mean colour (per channel), the harsher choice.
- Random reference: random scores on the map's own grid (the Grad-CAM layer's feature-map side),
  upsampled the same way, so the reference removes blobs of the same coarseness and only *where*
  differs; `grid=None` orders single pixels at random (the textbook reference, which scatters
  isolated pixels and so changes the picture far less than removing regions).
- Ties in a map (Grad-CAM's zeros) are broken at random with a fixed seed, never in raster order.

Only the explained branch runs again: the other modalities enter as their cached features
(`Encoded.feats`), and each curve is one encoder pass over a [steps+1, 3, H, W] batch.
Arrays in, numbers out (the explain layer's habit).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skinui.explain.core import head_batch, resolve_target
from skinui.inference import Encoded
from skinui.views import VIEWS

BASELINES = ("blur", "mean")
SEEDS = (0, 1, 2)


def fractions(steps: int) -> np.ndarray:
    """The x axis: 0, 1/steps, ..., 1 (share of the image's pixels removed or revealed)."""
    if steps < 1:
        raise ValueError("steps must be at least 1.")
    return np.linspace(0.0, 1.0, steps + 1)


def area(curve: np.ndarray | list[float]) -> float:
    """Area under a curve sampled at `fractions(len(curve) - 1)` (trapezoid over [0, 1])."""
    y = np.asarray(curve, dtype=np.float64)
    return float(((y[1:] + y[:-1]) / 2).sum() / (len(y) - 1))


def upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to `size` (half-pixel centres, as pytorch-grad-cam's cv2 resize does)."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape == tuple(size):
        return heat
    t = torch.from_numpy(heat)[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def saliency_rank(cam: np.ndarray, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Rank of every pixel [H*W] (0 = most salient), the map upsampled to `size`; ties broken at random."""
    heat = upsample(cam, size).ravel()
    tie = np.random.default_rng(seed).random(heat.size)
    order = np.lexsort((tie, -heat))  # by -heat, then by the random key
    rank = np.empty(heat.size, dtype=np.int64)
    rank[order] = np.arange(heat.size)
    return rank


def step_masks(rank: np.ndarray, steps: int, size: tuple[int, int]) -> torch.Tensor:
    """[steps+1, 1, H, W] bool: step k selects the round(k/steps * H*W) highest-ranked pixels."""
    counts = np.rint(fractions(steps) * rank.size).astype(np.int64)
    masks = rank[None, :] < counts[:, None]
    return torch.from_numpy(masks).reshape(steps + 1, 1, *size)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] with reflected borders (no dark frame at the edges)."""
    radius = max(1, min(math.ceil(3 * sigma), x.shape[-1] - 1, x.shape[-2] - 1))
    k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2) / (2 * sigma * sigma))
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def baseline_image(x: torch.Tensor, kind: str = "blur") -> torch.Tensor:
    """What removed pixels become, for an image [1, 3, H, W] in the model's normalised space."""
    if kind == "blur":
        return gaussian_blur(x, sigma=max(x.shape[-2:]) / 16)
    if kind == "mean":
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
    raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {kind!r}.")


def random_map(size: tuple[int, int], seed: int, grid: int | None = None) -> np.ndarray:
    """Random scores: per pixel (`grid=None`) or on a grid x grid lattice upsampled to `size`."""
    rng = np.random.default_rng(seed)
    if grid is None:
        return rng.random(size).astype(np.float32)
    return upsample(rng.random((grid, grid)).astype(np.float32), size)


def _image(enc: Encoded, modality: str) -> torch.Tensor:
    x = enc.batch.get(modality)
    if x is None or x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"Deletion and insertion need one case with a {modality} image tensor [1, 3, H, W].")
    if enc.mask is not None and modality in enc.mask and not bool(enc.mask[modality].all()):
        raise ValueError(f"This case's {modality} image is masked out, so the model does not look at it.")
    return x


@torch.no_grad()
def target_probabilities(enc: Encoded, modality: str, images: torch.Tensor, target: int) -> np.ndarray:
    """Calibrated probability of `target` for each image [N, 3, H, W] of `modality`, the other
    modalities held at their cached features (one encoder pass, one head pass; an entry that
    averages views scores every view of the perturbed image, as its predictions do)."""
    encoder = enc.entry.model.image_encoders[modality]
    views = list(VIEWS.values()) if enc.entry.averages_views else [()]
    feats = [encoder(torch.flip(images, axes)) for axes in views]
    logits = head_batch(enc, images.shape[0], {modality: feats if len(feats) > 1 else feats[0]}).logits
    return enc.entry.calibrated_probabilities(logits)[:, target].double().numpy()


def curves_for_rank(enc: Encoded, modality: str, rank: np.ndarray, target: int, steps: int,
                    base: torch.Tensor) -> dict[str, Any]:
    """Deletion and insertion curves for one pixel order, with their areas."""
    x = _image(enc, modality)
    masks = step_masks(rank, steps, tuple(x.shape[-2:])).to(x.device)
    deletion = target_probabilities(enc, modality, torch.where(masks, base, x), target)
    insertion = target_probabilities(enc, modality, torch.where(masks, x, base), target)
    return {"deletion": deletion.tolist(), "insertion": insertion.tolist(),
            "deletion_auc": area(deletion), "insertion_auc": area(insertion)}


def deletion_insertion(enc: Encoded, modality: str, cam: np.ndarray, target: int | str | None = None,
                       steps: int = 16, baseline: str = "blur") -> dict[str, Any]:
    """Deletion and insertion curves of `cam` (any H x W; upsampled to the input) for `target`
    (index, class code or None = predicted class): {"fractions", "deletion", "insertion",
    "deletion_auc", "insertion_auc", "target"}. deletion[0] = insertion[-1] = the full image's
    probability; deletion[-1] = insertion[0] = the baseline image's."""
    x = _image(enc, modality)
    t = resolve_target(enc, target)
    out = curves_for_rank(enc, modality, saliency_rank(cam, tuple(x.shape[-2:])), t, steps,
                          baseline_image(x, baseline))
    return {"fractions": fractions(steps).tolist(), "target": t, **out}


def random_reference(enc: Encoded, modality: str, target: int | str | None = None, steps: int = 16,
                     baseline: str = "blur", seeds: tuple[int, ...] = SEEDS, grid: int | None = None) -> dict[str, Any]:
    """The same curves for random maps (`random_map`), averaged over `seeds`; per-seed areas kept."""
    x = _image(enc, modality)
    size = tuple(x.shape[-2:])
    t = resolve_target(enc, target)
    base = baseline_image(x, baseline)
    runs = [curves_for_rank(enc, modality, saliency_rank(random_map(size, s, grid), size, seed=s), t, steps, base)
            for s in seeds]
    deletion = np.mean([r["deletion"] for r in runs], axis=0)
    insertion = np.mean([r["insertion"] for r in runs], axis=0)
    return {"fractions": fractions(steps).tolist(), "target": t, "deletion": deletion.tolist(),
            "insertion": insertion.tolist(), "deletion_auc": area(deletion), "insertion_auc": area(insertion),
            "seed_deletion_auc": [r["deletion_auc"] for r in runs],
            "seed_insertion_auc": [r["insertion_auc"] for r in runs]}


def feature_grid(enc: Encoded, modality: str) -> int | None:
    """Side of the Grad-CAM layer's feature map for this input (the map's own coarseness)."""
    layer = enc.entry.model.image_encoders[modality].target_layer
    if layer is None:
        return None
    seen: list[int] = []
    handle = layer.register_forward_hook(lambda m, a, out: seen.append(int(out.shape[-1])))
    try:
        with torch.no_grad():
            enc.entry.model.image_encoders[modality](_image(enc, modality))
    finally:
        handle.remove()
    return seen[0] if seen else None


def case_faithfulness(enc: Encoded, modality: str, cam: np.ndarray, target: int | str | None = None,
                      steps: int = 16, baseline: str = "blur", seeds: tuple[int, ...] = SEEDS,
                      grid: int | None = None) -> dict[str, Any]:
    """One case and image: the map's curves and the random reference's, as a row for `summarise`."""
    mine = deletion_insertion(enc, modality, cam, target, steps, baseline)
    rand = random_reference(enc, modality, mine["target"], steps, baseline, seeds, grid)
    return {"target": mine["target"], "full": mine["deletion"][0], "baseline": mine["deletion"][-1],
            "map": mine, "random": rand}


def _mean_ci(values: np.ndarray) -> dict[str, float]:
    """Mean with a normal-approximation 95% interval (paired differences over cases)."""
    half = 1.96 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    m = float(values.mean())
    return {"mean": m, "low": m - half, "high": m + half}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over cases (rows of `case_faithfulness`): mean areas for the map and for random, the share of
    cases where the map beats random (deletion lower, insertion higher), the mean paired margins
    with 95% intervals, and the mean curves."""
    if not rows:
        return {"n": 0}

    def col(kind: str, key: str) -> np.ndarray:
        return np.array([r[kind][key] for r in rows], dtype=np.float64)

    md, mi = col("map", "deletion_auc"), col("map", "insertion_auc")
    rd, ri = col("random", "deletion_auc"), col("random", "insertion_auc")
    curves = {f"{kind}_{c}": np.mean([r[kind][c] for r in rows], axis=0).round(4).tolist()
              for kind in ("map", "random") for c in ("deletion", "insertion")}
    return {"n": len(rows), "deletion_auc": float(md.mean()), "random_deletion_auc": float(rd.mean()),
            "insertion_auc": float(mi.mean()), "random_insertion_auc": float(ri.mean()),
            "beats_random_deletion": float((md < rd).mean()), "beats_random_insertion": float((mi > ri).mean()),
            "deletion_margin": _mean_ci(rd - md), "insertion_margin": _mean_ci(mi - ri),
            "full_probability": float(np.mean([r["full"] for r in rows])),
            "baseline_probability": float(np.mean([r["baseline"] for r in rows])),
            "fractions": rows[0]["map"]["fractions"], "mean_curves": curves}
