"""Clinical close-up macro-appearance, one painter per clinical code (`design.CODES`).

A clinical photograph sees colour, surface and relief: erythema, scale, shine and elevation,
never dermoscopic micro-structure. Relief is a height map lit from `ctx.light`, so a raised
lesion has a lit and a shadowed side and a dome catches a specular highlight.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from skinui.registry import Registry
from skinui.synth import palette as P
from skinui.synth.canvas import Ctx, blur, grain, grid, mix, noise, paint, rgb, smoothstep

Painter = Callable[[Ctx], dict[str, Any]]
APPEARANCES: Registry[Painter] = Registry("clinical appearance")


def skin(img: np.ndarray, colour: tuple[float, float, float], rng: np.random.Generator) -> None:
    """Natural skin: mottled at a coarse scale, pores and fine lines at a fine scale."""
    size = img.shape[-1]
    img[:] = rgb(colour, 1.0 + 0.03 * noise(rng, size, 5) + 0.018 * noise(rng, size, size // 4))


def relief(ctx: Ctx, height: np.ndarray, strength: float) -> None:
    """Lambertian shading of a height map (in lesion-radius units) lit from `ctx.light`."""
    hy, hx = np.gradient(height)
    scale = np.float32(ctx.frame.px_per_unit * strength)
    lx, ly = ctx.light
    ctx.img *= np.clip(1.0 - scale * (hx * np.float32(lx) + hy * np.float32(ly)), 0.55, 1.45)


def _brown(tone: float) -> np.ndarray:
    return mix(P.LIGHT_BROWN, P.DARK_BROWN, 0.15 + 0.7 * tone)


@APPEARANCES.register("pigmented_macule")
def pigmented_macule(ctx: Ctx) -> dict[str, Any]:
    f = ctx.frame
    paint(ctx.img, rgb(_brown(ctx.tone), 1.0 + 0.05 * noise(ctx.view, f.size, 6)), f.mask(edge=0.3) * 0.85)
    return {"colour": "brown", "elevation": "flat", "surface": "smooth", "scale": False, "shine": False}


@APPEARANCES.register("scaly_erythema")
def scaly_erythema(ctx: Ctx) -> dict[str, Any]:
    f, S = ctx.frame, ctx.frame.size
    paint(ctx.img, P.ERYTHEMA, f.mask(edge=0.7, t0=1.1) * 0.75)
    cells = max(8, int(ctx.px(1.0) * 1.2))
    flakes = smoothstep(0.6, 1.3, noise(ctx.view, S, cells)) * f.mask(edge=0.3, t0=0.85)
    paint(ctx.img, P.KERATIN, flakes * 0.9)
    relief(ctx, blur(0.15 * f.mask(edge=0.6) + 0.05 * flakes, 0.8), 0.6)
    return {"colour": "erythematous", "elevation": "slight", "surface": "rough", "scale": True, "shine": False,
            "border": "ill-defined"}


@APPEARANCES.register("stuck_on_plaque")
def stuck_on_plaque(ctx: Ctx) -> dict[str, Any]:
    f, S = ctx.frame, ctx.frame.size
    bumps = noise(ctx.view, S, max(6, int(ctx.px(1.0) * 0.5)))
    paint(ctx.img, rgb(_brown(ctx.tone), 1.0 + 0.12 * bumps), f.mask(edge=0.08) * 0.95)
    height = 0.5 * f.mask(edge=0.15) * (1.0 + 0.08 * bumps)
    relief(ctx, height, 0.9)
    return {"colour": "brown", "elevation": "stuck-on plaque", "surface": "verrucous", "scale": False,
            "shine": False, "border": "sharp"}


@APPEARANCES.register("shiny_red_papule")
def shiny_red_papule(ctx: Ctx) -> dict[str, Any]:
    f, S = ctx.frame, ctx.frame.size
    paint(ctx.img, mix(P.PAPULE_PINK, P.PAPULE_RED, ctx.lesion.uniform()), f.mask(edge=0.15) * 0.9)
    dome = np.sqrt(np.clip(1.0 - f.t * f.t, 0.0, 1.0))
    relief(ctx, 0.8 * dome, 0.9)
    # specular highlight on the side facing the light
    gx, gy = grid(S)
    r = ctx.px(1.0) / (S / 2.0)
    cx = f.view.centre[0] + 0.35 * r * ctx.light[0]
    cy = f.view.centre[1] + 0.35 * r * ctx.light[1]
    d2 = ((gx - np.float32(cx)) ** 2 + (gy - np.float32(cy)) ** 2) * np.float32(1.0 / (0.2 * r) ** 2)
    paint(ctx.img, P.WHITE, np.exp(-np.minimum(d2, 60.0)) * f.mask(edge=0.2) * 0.85)
    return {"colour": "red-pink", "elevation": "dome", "surface": "smooth", "scale": False, "shine": True}


def photograph(img: np.ndarray, rng: np.random.Generator, light: tuple[float, float]) -> np.ndarray:
    """Camera and room: directional lighting gradient, white balance, exposure, focus blur, noise."""
    size = img.shape[-1]
    gx, gy = grid(size)
    ramp = 1.0 + np.float32(rng.uniform(0.05, 0.2)) * (gx * np.float32(light[0]) + gy * np.float32(light[1]))
    gains = rgb(rng.uniform(0.95, 1.05, 3) * rng.uniform(0.9, 1.1))
    out = img * ramp * gains
    out = blur(out, rng.uniform(0.4, 1.3) * size / 224)
    return grain(out, rng, 0.012)
