"""Drawing primitives: a lesion shape shared by both views, the per-view frame, noise and paint.

A lesion lives in its own coordinates (u, v), in units of its radius; a `View` places it in an
image (centre, size, rotation, foreshortening). A `Frame` is the per-pixel result: lesion
coordinates of every pixel and the normalised radius `t` (0 at the centre, 1 on the border).
Structures drawn in lesion coordinates therefore reappear, transformed, in every view of the
same lesion. Images are planar float32 RGB, shape (3, H, W), values in [0, 1], until they are
written: per-channel planes keep numpy's inner loops long (an interleaved HxWx3 array broadcast
against a colour runs ~10x slower).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

LUT_BINS = 512
SHIFT = 4  # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
ONE = 1 << SHIFT


@dataclass(frozen=True)
class Shape:
    """Border radius as a function of angle: 1 + sum a_k cos(k theta + phase_k)."""

    orders: tuple[int, ...]
    amplitudes: tuple[float, ...]
    phases: tuple[float, ...]

    @staticmethod
    def random(rng: np.random.Generator, orders: range, amplitude: tuple[float, float]) -> Shape:
        k = tuple(orders)
        return Shape(k, tuple(rng.uniform(*amplitude, len(k)) / np.sqrt(np.arange(1, len(k) + 1))),
                     tuple(rng.uniform(0, 2 * np.pi, len(k))))

    def lut(self, extra: Shape | None = None) -> np.ndarray:
        theta = np.linspace(0, 2 * np.pi, LUT_BINS, endpoint=False)
        r = np.ones_like(theta)
        for s in (self, extra) if extra is not None else (self,):
            for k, a, p in zip(s.orders, s.amplitudes, s.phases):
                r += a * np.cos(k * theta + p)
        return np.maximum(r, 0.35).astype(np.float32)


@dataclass(frozen=True)
class View:
    """Where a lesion appears in an image (normalised image units: the half-width is 1)."""

    centre: tuple[float, float]
    radius: float
    rotation: float
    elongation: float = 1.0  # the lesion's own aspect ratio (>= 1)
    squash: float = 1.0  # viewpoint foreshortening (<= 1) along `squash_angle`
    squash_angle: float = 0.0

    def matrix(self) -> np.ndarray:
        """Lesion (u, v) -> normalised image offset from the centre."""
        def rot(a: float) -> np.ndarray:
            return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        fore = rot(self.squash_angle) @ np.diag([1.0, self.squash]) @ rot(-self.squash_angle)
        e = np.sqrt(self.elongation)
        return fore @ rot(self.rotation) @ np.diag([e, 1.0 / e]) * self.radius


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (x, y) of every pixel centre (half-width = 1); cached, so never modify in place."""
    half = size / 2.0
    axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / half
    return np.meshgrid(axis, axis)


class Frame:
    """Per-pixel lesion coordinates of one view; the painting functions read these."""

    def __init__(self, size: int, view: View, shape: Shape, extra: Shape | None = None) -> None:
        self.size, self.view = size, view
        self.m = view.matrix()
        inv = np.linalg.inv(self.m).astype(np.float32)
        gx, gy = grid(size)
        dx, dy = gx - np.float32(view.centre[0]), gy - np.float32(view.centre[1])
        self.u = inv[0, 0] * dx + inv[0, 1] * dy
        self.v = inv[1, 0] * dx + inv[1, 1] * dy
        rho, theta = cv2.cartToPolar(self.u, self.v)  # theta in [0, 2 pi)
        idx = np.minimum((theta * np.float32(LUT_BINS / (2 * np.pi))).astype(np.int32), LUT_BINS - 1)
        self.border = shape.lut(extra)
        self.t = rho / self.border[idx]
        self.px_per_unit = float(np.sqrt(abs(np.linalg.det(self.m)))) * size / 2.0

    def to_px(self, uv: np.ndarray) -> np.ndarray:
        """Lesion coordinates [N, 2] -> pixel coordinates [N, 2] (x, y)."""
        half = self.size / 2.0
        p = np.asarray(uv, dtype=np.float64) @ self.m.T + np.asarray(self.view.centre)
        return p * half + (self.size - 1) / 2.0

    def inside_points(self, rng: np.random.Generator, n: int, t_range: tuple[float, float],
                      angle: tuple[float, float] = (-np.pi, np.pi)) -> np.ndarray:
        """n random lesion-coordinate points with normalised radius in t_range (border-aware)."""
        a = rng.uniform(*angle, n)
        r = np.sqrt(rng.uniform(t_range[0] ** 2, t_range[1] ** 2, n)) * self.border_at(a)
        return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)

    def border_at(self, angles: np.ndarray) -> np.ndarray:
        """Border radius (lesion units) at the given angles."""
        return self.border[(np.mod(angles, 2 * np.pi) * (LUT_BINS / (2 * np.pi))).astype(np.int32) % LUT_BINS]

    def mask(self, edge: float = 0.0, t0: float = 1.0) -> np.ndarray:
        """Soft lesion coverage: 1 inside t0, ramping to 0 over `edge` (hard when edge == 0)."""
        if edge <= 0:
            return (self.t < t0).astype(np.float32)
        return smoothstep(t0 + edge / 2, t0 - edge / 2, self.t)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    y = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return y * y * (3.0 - 2.0 * y)


def noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise, roughly N(0, 1): a cells x cells Gaussian field upsampled to size x size.

    Bicubic to 8x the cells, then bilinear: looks the same and is ~10x faster than one bicubic
    step from a tiny grid.
    """
    cells = max(2, int(cells))
    g = rng.standard_normal((cells, cells), dtype=np.float32)
    g *= np.float32(1.0 / max(float(g.std()), 1e-3))  # normalise the small field: cheap, near enough
    mid = min(size, cells * 8)
    g = cv2.resize(g, (mid, mid), interpolation=cv2.INTER_CUBIC)
    return g if mid == size else cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR)


@lru_cache(maxsize=4)
def _grain_tile(size: int) -> np.ndarray:
    tile = np.random.default_rng(20240611).standard_normal((2 * size, 2 * size), dtype=np.float32)
    tile.flags.writeable = False
    return tile


def paint(img: np.ndarray, colour: np.ndarray | tuple[float, float, float], alpha: np.ndarray) -> None:
    """In place: img <- img + (colour - img) * alpha (colour a 3-vector or a (3, H, W) array).

    Only the bounding box of the non-zero alpha is touched: most layers cover a small lesion.
    """
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return
    cols = np.flatnonzero(alpha.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    c = np.asarray(colour, dtype=np.float32)
    c = c[(slice(None), *box)] if c.ndim == 3 else c.reshape(3, 1, 1)
    sub = img[(slice(None), *box)]
    d = c - sub
    d *= alpha[box]
    sub += d


def grain(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Sensor noise on luminance: a randomly placed window of a fixed noise tile (no per-pixel draws)."""
    size = img.shape[-1]
    dy, dx = rng.integers(0, size, 2)
    window = _grain_tile(size)[dy:dy + size, dx:dx + size]
    return img + np.float32(sigma) * window


def rgb(colour: tuple[float, float, float] | np.ndarray, field: np.ndarray | None = None) -> np.ndarray:
    """A colour as a (3, 1, 1) plane stack, or times a per-pixel factor as (3, H, W)."""
    c = np.asarray(colour, dtype=np.float32).reshape(3, 1, 1)
    return c if field is None else c * field


def layer(size: int) -> np.ndarray:
    return np.zeros((size, size), np.float32)


def fixed(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates -> cv2's fixed-point int32 (use with shift=SHIFT)."""
    return np.round(np.asarray(points) * ONE).astype(np.int32)


def draw_circles(target: np.ndarray, centres: np.ndarray, radii: np.ndarray, value: float = 1.0,
                 thickness: int = -1) -> None:
    for (x, y), r in zip(fixed(centres), np.maximum(np.asarray(radii) * ONE, ONE // 2).astype(int)):
        cv2.circle(target, (int(x), int(y)), int(r), value, thickness, cv2.LINE_AA, SHIFT)


def draw_polylines(target: np.ndarray, lines: list[np.ndarray], value: float = 1.0, thickness: int = 1) -> None:
    if lines:
        cv2.polylines(target, [fixed(p).reshape(-1, 1, 2) for p in lines], False, value,
                      max(1, int(thickness)), cv2.LINE_AA, SHIFT)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a plane (H, W) or a planar image (3, H, W)."""
    if sigma <= 0.05:
        return img
    if img.ndim == 2:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    return np.stack([cv2.GaussianBlur(plane, (0, 0), sigma) for plane in img])


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Planar [0, 1] float (3, H, W) -> interleaved RGB uint8 (H, W, 3), rounded and saturated.

    Negatives are clamped first because convertScaleAbs takes the absolute value.
    """
    return cv2.convertScaleAbs(cv2.max(cv2.merge(list(img)), 0.0), alpha=255.0)


def mix(a: tuple[float, ...], b: tuple[float, ...], w: float) -> np.ndarray:
    return (np.asarray(a, np.float32) * (1 - w) + np.asarray(b, np.float32) * w).astype(np.float32)


def network(u: np.ndarray, v: np.ndarray, spacing: float, width: float, angle: float = 0.0) -> np.ndarray:
    """Honeycomb-like pigment network in [0, 1] (1 on the lines) over lesion coordinates."""
    k = np.float32(np.pi / spacing)  # float32 scalars: a float64 one would promote the whole field
    c, s = np.float32(np.cos(angle)) * k, np.float32(np.sin(angle)) * k
    a = np.abs(np.sin(u * c + v * s))
    b = np.abs(np.sin(v * c - u * s))
    d = np.minimum(a, b)
    return np.exp(-(d * d) * np.float32(1.0 / (width * width)))


@dataclass
class Ctx:
    """What a painter gets: the image to paint on, the lesion frame, two random streams, inputs."""

    img: np.ndarray
    frame: Frame
    lesion: np.random.Generator  # lesion-intrinsic structure: identical on every visit
    view: np.random.Generator  # this photograph's texture
    tone: float  # pigment darkness in [0, 1], class-independent
    light: tuple[float, float] = (0.0, -1.0)  # unit vector towards the light, image axes (clinical)

    def px(self, units: float) -> float:
        return units * self.frame.px_per_unit

    def blob(self, centre: tuple[float, float], radius: float, wobble: float = 0.0) -> np.ndarray:
        """Soft disc in lesion coordinates, its edge roughened by view noise."""
        f = self.frame
        d = np.sqrt((f.u - np.float32(centre[0])) ** 2 + (f.v - np.float32(centre[1])) ** 2)
        if wobble:
            d = d + np.float32(wobble) * noise(self.view, f.size, 7)
        return smoothstep(radius, radius * 0.55, d)
