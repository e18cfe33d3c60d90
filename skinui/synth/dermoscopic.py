"""Dermoscopic micro-structure, one painter per dermoscopic code (`design.CODES`).

Painters see only their code, the lesion frame and class-independent inputs (pigment tone), so
classes sharing a code are identically distributed in this modality. Structures are placed in
lesion coordinates from the lesion's own random stream (`ctx.lesion`): a follow-up visit shows the
same veil and the same vessels, rotated and rescaled; photographic texture comes from `ctx.view`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from skinui.registry import Registry
from skinui.synth import palette as P
from skinui.synth.canvas import (
    Ctx,
    Shape,
    draw_circles,
    draw_polylines,
    layer,
    mix,
    network,
    noise,
    paint,
    rgb,
    smoothstep,
)

Painter = Callable[[Ctx], dict[str, Any]]
PATTERNS: Registry[Painter] = Registry("dermoscopic pattern")

# Codes whose border gets extra high-frequency irregularity (dermoscopy only): (orders, amplitude).
IRREGULAR_BORDER = {"atypical_network": (range(5, 11), (0.04, 0.07))}


def border_extra(code: str, rng: np.random.Generator) -> Shape | None:
    spec = IRREGULAR_BORDER.get(code)
    return Shape.random(rng, spec[0], spec[1]) if spec else None


def skin(img: np.ndarray, colour: tuple[float, float, float], rng: np.random.Generator) -> None:
    """Dermoscopic skin background: tinted, slightly mottled."""
    base = np.asarray(colour, np.float32) * np.asarray(P.DERMOSCOPE_TINT, np.float32) + 0.03
    img[:] = rgb(base, 1.0 + 0.035 * noise(rng, img.shape[-1], 6))


def _brown(tone: float) -> np.ndarray:
    return mix(P.LIGHT_BROWN, P.MID_BROWN, tone)


@PATTERNS.register("regular_network")
def regular_network(ctx: Ctx) -> dict[str, Any]:
    f, L = ctx.frame, ctx.lesion
    alpha = f.mask(edge=0.3) * 0.85
    paint(ctx.img, rgb(_brown(ctx.tone), 1.0 - 0.12 * np.clip(1.0 - f.t, 0, 1)), alpha)
    net = network(f.u, f.v, spacing=L.uniform(0.15, 0.19), width=0.28, angle=L.uniform(0, np.pi))
    paint(ctx.img, mix(P.MID_BROWN, P.DARK_BROWN, ctx.tone), net * f.mask(edge=0.4, t0=0.85) * 0.55)
    n_glob = int(L.integers(6, 12)) if L.random() < 0.5 else 0
    if n_glob:
        a = np.linspace(0, 2 * np.pi, n_glob, endpoint=False) + L.uniform(0, np.pi)
        uv = 0.55 * np.stack([np.cos(a), np.sin(a)], 1) * f.border_at(a)[:, None]
        lay = layer(f.size)
        draw_circles(lay, f.to_px(uv), np.full(n_glob, ctx.px(0.07)))
        paint(ctx.img, P.MID_BROWN, lay * 0.8)
    return {"pigment_network": "regular", "asymmetry": False, "colours": 2, "globules": n_glob,
            "blue_white_veil": False, "border": "regular"}


@PATTERNS.register("atypical_network")
def atypical_network(ctx: Ctx) -> dict[str, Any]:
    f, L, S = ctx.frame, ctx.lesion, ctx.frame.size
    alpha = f.mask(edge=0.1)
    paint(ctx.img, _brown(ctx.tone), alpha * 0.9)
    a0 = L.uniform(0, 2 * np.pi)
    c0, s0 = np.float32(np.cos(a0)), np.float32(np.sin(a0))
    # asymmetric pigment: one side of the lesion darker, boundary shaped by noise
    dark = smoothstep(-0.15, 0.45, f.u * c0 + f.v * s0 + 0.3 * noise(ctx.view, S, 5)) * alpha
    paint(ctx.img, mix(P.DARK_BROWN, P.BLACK, 0.5), dark * 0.85)
    warp_u, warp_v = noise(ctx.view, S, 6), noise(ctx.view, S, 6)
    net = network(f.u + 0.07 * warp_u, f.v + 0.07 * warp_v, spacing=L.uniform(0.17, 0.24), width=0.5,
                  angle=L.uniform(0, np.pi))
    broken = (noise(ctx.view, S, 8) > -0.4).astype(np.float32)
    paint(ctx.img, P.BLACK, net * broken * alpha * 0.75)
    colours, cues = 3, {}
    cues["blue_white_veil"] = bool(L.random() < 0.85)
    if cues["blue_white_veil"]:
        paint(ctx.img, P.VEIL, ctx.blob((0.35 * c0, 0.35 * s0), L.uniform(0.4, 0.55), 0.06) * alpha * 0.8)
        colours += 1
    cues["regression"] = bool(L.random() < 0.5)
    if cues["regression"]:
        paint(ctx.img, P.REGRESSION, ctx.blob((-0.45 * c0, -0.4 * s0), L.uniform(0.25, 0.35), 0.05) * alpha * 0.6)
        colours += 1
    n_dots = int(L.integers(10, 26))
    uv = f.inside_points(L, n_dots, (0.65, 1.0), (a0 - 1.3, a0 + 1.3))
    lay = layer(S)
    draw_circles(lay, f.to_px(uv), ctx.px(1.0) * L.uniform(0.025, 0.075, n_dots))
    paint(ctx.img, P.BLACK, lay * 0.9)
    return {"pigment_network": "atypical", "asymmetry": True, "colours": colours, "dots": n_dots,
            "border": "irregular", **cues}


@PATTERNS.register("keratotic")
def keratotic(ctx: Ctx) -> dict[str, Any]:
    f, L, S = ctx.frame, ctx.lesion, ctx.frame.size
    paint(ctx.img, mix(P.TAN, P.PINK, L.uniform()), f.mask(edge=0.35) * 0.85)
    centre = tuple(L.normal(0, 0.1, 2))
    paint(ctx.img, P.KERATIN, ctx.blob(centre, L.uniform(0.35, 0.55), 0.1) * 0.85)
    n_circ = int(L.integers(5, 12))
    lay = layer(S)
    draw_circles(lay, f.to_px(f.inside_points(L, n_circ, (0.25, 0.85))), ctx.px(1.0) * L.uniform(0.06, 0.1, n_circ),
                 thickness=max(1, round(S / 160)))
    paint(ctx.img, P.WHITE, lay * 0.85)
    n_ves = int(L.integers(20, 45))
    lay = layer(S)
    draw_circles(lay, f.to_px(f.inside_points(L, n_ves, (0.1, 0.9))), ctx.px(1.0) * L.uniform(0.025, 0.045, n_ves))
    paint(ctx.img, P.RED, lay * 0.9)
    return {"keratin": True, "white_circles": n_circ, "vessels": "glomerular", "vessel_count": n_ves}


def _branches(rng: np.random.Generator, start: np.ndarray, heading: float, length: float, depth: int,
              out: list[tuple[int, np.ndarray]], level: int = 0) -> None:
    """Arborizing vessel: a slightly curved segment that forks into two thinner ones."""
    steps = np.linspace(0, 1, 6)[:, None]
    bend = rng.normal(0, 0.35)
    ang = heading + bend * steps[:, 0]
    pts = start + np.cumsum(np.stack([np.cos(ang), np.sin(ang)], 1) * length / 5, 0) - \
        np.array([np.cos(ang[0]), np.sin(ang[0])]) * length / 5
    out.append((level, pts))
    if depth > 0:
        for side in (-1, 1):
            _branches(rng, pts[-1], ang[-1] + side * rng.uniform(0.35, 0.8), length * rng.uniform(0.5, 0.7),
                      depth - 1, out, level + 1)


@PATTERNS.register("arborizing_vessels")
def arborizing_vessels(ctx: Ctx) -> dict[str, Any]:
    f, L, S = ctx.frame, ctx.lesion, ctx.frame.size
    paint(ctx.img, mix(P.PINK, P.WHITE, L.uniform(0.2, 0.5)), f.mask(edge=0.2) * 0.8)
    n_nests = int(L.integers(1, 5)) if L.random() < 0.7 else 0
    if n_nests:
        lay = layer(S)
        draw_circles(lay, f.to_px(f.inside_points(L, n_nests, (0.1, 0.7))), ctx.px(1.0) * L.uniform(0.08, 0.15, n_nests))
        paint(ctx.img, P.BLUE_GREY, lay * 0.75)
    segments: list[tuple[int, np.ndarray]] = []
    n_trunks = int(L.integers(2, 5))
    for a in L.uniform(0, 2 * np.pi, n_trunks):
        start = 0.85 * np.array([np.cos(a), np.sin(a)])
        _branches(L, start, a + np.pi + L.normal(0, 0.4), L.uniform(0.45, 0.7), 2, segments)
    for level in range(3):
        lay = layer(S)
        width = max(1, round(ctx.px(0.06 - 0.015 * level)))
        draw_polylines(lay, [f.to_px(p) for lv, p in segments if lv == level], thickness=width)
        paint(ctx.img, P.RED, lay * 0.9 * f.mask(edge=0.1, t0=1.02))
    return {"vessels": "arborizing", "vessel_segments": len(segments), "ovoid_nests": n_nests}


@PATTERNS.register("central_white_patch")
def central_white_patch(ctx: Ctx) -> dict[str, Any]:
    f, L = ctx.frame, ctx.lesion
    paint(ctx.img, mix(P.LIGHT_BROWN, P.TAN, 0.5), f.mask(edge=0.4) * 0.7)
    net = network(f.u, f.v, spacing=L.uniform(0.12, 0.15), width=0.22, angle=L.uniform(0, np.pi))
    paint(ctx.img, mix(P.LIGHT_BROWN, P.MID_BROWN, ctx.tone), net * f.mask(edge=0.4, t0=0.9) * 0.5)
    paint(ctx.img, P.WHITE, ctx.blob(tuple(L.normal(0, 0.06, 2)), L.uniform(0.42, 0.55), 0.08) * 0.9)
    return {"central_white_patch": True, "pigment_network": "delicate peripheral"}


@PATTERNS.register("red_lacunae")
def red_lacunae(ctx: Ctx) -> dict[str, Any]:
    f, L, S = ctx.frame, ctx.lesion, ctx.frame.size
    paint(ctx.img, mix(P.PINK, P.WHITE, 0.35), f.mask(edge=0.08) * 0.9)
    n = int(L.integers(15, 36))
    uv = f.inside_points(L, n, (0.0, 0.88))
    radii = ctx.px(1.0) * L.uniform(0.09, 0.17, n)
    shade_of = L.integers(0, 3, n)
    for k, colour in enumerate((P.RED, P.PURPLE, P.DARK_RED)):
        sel = shade_of == k
        lay = layer(S)
        draw_circles(lay, f.to_px(uv[sel]), radii[sel])
        paint(ctx.img, colour, lay * 0.92)
    return {"lacunae": n, "septa": True}
