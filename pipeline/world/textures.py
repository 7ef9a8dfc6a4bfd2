"""Procedural materials: a colour pattern (checker, stripes, noise) with grain, and cut-outs.

Patterns are functions of 2-D surface coordinates in metres (`u`, `v`, given by each shape) and
of the pixel's footprint on the surface (`width`, metres): they are box-filtered over the
footprint (analytically for checker and stripes, by dropping octaves finer than the footprint for
noise), so distant textures average out instead of aliasing, and a view rendered at a lower
resolution is blurrier exactly as a camera with bigger pixels would be. Everything is computed
per pixel from that pixel's own values, so a crop renders the same bytes as the full image.

Cut-outs (`alpha`: fence slats, wire mesh, leaves) are hard decisions at the exact hit point,
never filtered: they decide the geometry, hence the depth, of the pixel-centre ray.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

Colour = tuple[float, float, float]

PATTERNS = ("flat", "checker", "stripes", "noise")
CUTOUTS = ("none", "slats", "grid", "leaves")
OCTAVES = 4
GRAIN_OCTAVES = 2
NOISE_CONTRAST = 2.5
"""fbm values cluster near 0.5: patterns stretch them by this much (then clip to [0, 1])."""


@dataclass(frozen=True)
class Material:
    """How a surface looks: `pattern` mixes `colour_a` and `colour_b` (linear RGB in [0, 1]).

    The pattern repeats every `scale` metres (checker cell side, stripe period, noise feature
    size), rotated by `angle_deg` in the surface plane (the cut-out is not rotated). `grain`
    (0..1) multiplies the colour by fine noise of feature size `grain_scale` metres. `cutout`
    removes parts of the surface:
    `slats` keeps stripes of period `cutout_scale` along u with duty `cutout_fill` (fence boards),
    `grid` keeps bars of width `cutout_fill * cutout_scale` in both directions (wire mesh),
    `leaves` keeps noise above `1 - cutout_fill` at feature size `cutout_scale` (foliage).
    """

    pattern: str = "flat"
    colour_a: Colour = (0.5, 0.5, 0.5)
    colour_b: Colour = (0.5, 0.5, 0.5)
    scale: float = 1.0
    angle_deg: float = 0.0
    grain: float = 0.0
    grain_scale: float = 0.05
    cutout: str = "none"
    cutout_scale: float = 0.1
    cutout_fill: float = 0.5
    seed: int = 0
    """Seed of the noise lattices (pattern, grain and leaves)."""

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; valid: {', '.join(PATTERNS)}")
        if self.cutout not in CUTOUTS:
            raise ValueError(f"unknown cutout {self.cutout!r}; valid: {', '.join(CUTOUTS)}")
        if min(self.scale, self.grain_scale, self.cutout_scale) <= 0:
            raise ValueError("material scales must be > 0 metres")

    @property
    def has_cutout(self) -> bool:
        return self.cutout != "none"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> Material:
        fields = dict(obj)
        for name in ("colour_a", "colour_b"):
            fields[name] = tuple(float(c) for c in fields[name])
        return cls(**fields)

    def albedo(self, u: np.ndarray, v: np.ndarray, width: np.ndarray) -> np.ndarray:
        """Linear RGB `[N, 3]` at surface coordinates `u`, `v` `[N]` with footprint `width`."""
        a, b = self._rotated(u, v)
        mix = pattern_value(self.pattern, a / self.scale, b / self.scale, width / self.scale, self)
        ca, cb = np.asarray(self.colour_a), np.asarray(self.colour_b)
        rgb = ca + mix[:, None] * (cb - ca)
        if self.grain > 0:
            gs = self.grain_scale
            g = fbm(u / gs, v / gs, width / gs, self.seed + 3, octaves=GRAIN_OCTAVES)
            rgb = rgb * (1.0 + self.grain * NOISE_CONTRAST * (2.0 * g - 1.0))[:, None]
        return np.clip(rgb, 0.0, 1.0)

    def keeps(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Whether the surface exists at `u`, `v` (bool `[N]`): the cut-out test of a hit."""
        if self.cutout == "none":
            return np.ones(u.shape, dtype=bool)
        a, b = u, v  # not rotated: slats stand across u (upright boards on an upright quad)
        s = self.cutout_scale
        if self.cutout == "slats":
            return np.mod(a / s, 1.0) < self.cutout_fill
        if self.cutout == "grid":
            return (np.mod(a / s, 1.0) < self.cutout_fill) | (np.mod(b / s, 1.0) < self.cutout_fill)
        zero = np.zeros(u.shape)
        return fbm(a / s, b / s, zero, self.seed + 7, octaves=3) > 1.0 - self.cutout_fill

    def _rotated(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.angle_deg == 0:
            return u, v
        c, s = math.cos(math.radians(self.angle_deg)), math.sin(math.radians(self.angle_deg))
        return c * u - s * v, s * u + c * v


def pattern_value(name: str, a: np.ndarray, b: np.ndarray, w: np.ndarray, m: Material):
    """The pattern in [0, 1] at pattern coordinates `a`, `b` (periods) with filter width `w`."""
    if name == "flat":
        return np.zeros(a.shape)
    if name == "checker":
        return 0.5 - 0.5 * square_wave(a, w) * square_wave(b, w)
    if name == "stripes":
        return 0.5 + 0.5 * square_wave(a, w)
    return np.clip(0.5 + NOISE_CONTRAST * (fbm(a, b, w, m.seed) - 0.5), 0.0, 1.0)


def square_wave(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A ±1 square wave of period 2 box-filtered over `[x - w/2, x + w/2]` (exact, in [-1, 1]):
    the difference of its integral, a triangle wave, across the filter."""
    w = np.maximum(w, 1e-6)
    tri_lo = np.abs(np.mod(0.5 * (x - 0.5 * w), 1.0) - 0.5)
    tri_hi = np.abs(np.mod(0.5 * (x + 0.5 * w), 1.0) - 0.5)
    return np.clip(2.0 * (tri_lo - tri_hi) / w, -1.0, 1.0)


def hash_u32(values: np.ndarray, seed: int) -> np.ndarray:
    """A well-mixed uint32 per integer (wrapping uint32 maths: the same on every machine)."""
    h = values.astype(np.uint32) * np.uint32(0x27D4EB2D)
    h ^= np.uint32((seed * 0x9E3779B1) & 0xFFFFFFFF)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


@functools.lru_cache(maxsize=256)
def lattice_tables(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The permutation (512 entries: 256 repeated) and the 256 values in [0, 1) of a noise
    lattice, from integer hashes of 0..255 (no random generator, so stable across versions)."""
    codes = hash_u32(np.arange(256), seed)
    perm = np.argsort(codes, kind="stable").astype(np.intp)
    values = (hash_u32(np.arange(256), seed + 1) >> np.uint32(8)) / float(1 << 24)
    return np.concatenate([perm, perm]), values


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1): values on the integer lattice (period 256) blended with a
    quintic fade; the lattice value at (i, j) is `values[perm[perm[i] + j]]`."""
    perm, values = lattice_tables(seed)
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy
    tx = tx * tx * tx * (tx * (tx * 6.0 - 15.0) + 10.0)
    ty = ty * ty * ty * (ty * (ty * 6.0 - 15.0) + 10.0)
    ix = fx.astype(np.int64) & 255
    iy = fy.astype(np.int64) & 255
    iy1 = (iy + 1) & 255
    row0, row1 = perm[ix], perm[(ix + 1) & 255]
    v00, v10 = values[perm[row0 + iy]], values[perm[row1 + iy]]
    v01, v11 = values[perm[row0 + iy1]], values[perm[row1 + iy1]]
    top = v00 + tx * (v10 - v00)
    bottom = v01 + tx * (v11 - v01)
    return top + ty * (bottom - top)


def fbm(x: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int, octaves: int = OCTAVES):
    """Fractal noise in [0, 1] at feature size 1; octaves finer than the footprint `w` fade to
    their mean (0.5), which is what box-filtering them would give."""
    total = np.zeros(x.shape)
    amplitude, frequency, norm = 0.5, 1.0, 0.0
    for k in range(octaves):
        weight = np.clip(1.5 - 2.0 * w * frequency, 0.0, 1.0)
        live = weight > 0
        if live.all():
            noise = value_noise(x * frequency, y * frequency, seed + 101 * k)
            total += amplitude * (0.5 + weight * (noise - 0.5))
        else:
            value = np.full(x.shape, 0.5)
            if live.any():
                xl, yl = x[live] * frequency, y[live] * frequency
                value[live] = 0.5 + weight[live] * (value_noise(xl, yl, seed + 101 * k) - 0.5)
            total += amplitude * value
        norm += amplitude
        amplitude *= 0.5
        frequency *= 2.0
    return total / norm
