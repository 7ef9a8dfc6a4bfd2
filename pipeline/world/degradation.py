"""The degradations of `pipeline world labels`: what a real teacher gets wrong, as parameters
(`Degradation`, whose fields are the command's flags) and the numpy steps that apply them (see
`pipeline.world.labels` for the order and their meaning)."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Degradation:
    """What a teacher gets wrong (module docstring); all off: the exact column."""

    resolution: int | None = None
    """Short side in pixels at which the teacher sees each view; unset: the label's own size."""
    supersample: int = 4
    """Rays per pixel side averaged (in disparity) when `resolution` is set."""
    distortion: float = 0.0
    """Standard deviation of log γ of the per-view monotone curve on disparity."""
    bias: float = 0.0
    """Amplitude of the smooth multiplicative field on disparity (log scale)."""
    noise: float = 0.0
    """Standard deviation of the per-pixel multiplicative noise (log scale)."""
    seed: int = 0
    """Seed of the random draws (distortion, bias, noise)."""

    def __post_init__(self) -> None:
        if self.resolution is not None and self.resolution < 8:
            raise ValueError(f"--resolution must be ≥ 8 px, got {self.resolution}")
        if self.supersample < 1:
            raise ValueError(f"--supersample must be ≥ 1, got {self.supersample}")
        if min(self.distortion, self.bias, self.noise) < 0:
            raise ValueError("--distortion, --bias and --noise must be ≥ 0")

    @property
    def exact(self) -> bool:
        return self.resolution is None and not (self.distortion or self.bias or self.noise)

    def options(self) -> dict[str, Any]:
        """The parameters as the manifest records them (the exact column records none)."""
        return {} if self.exact else dataclasses.asdict(self)


def rng_for(seed: int, key: str, view: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{key}/{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def resize(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres), numpy only."""
    if arr.shape == (h, w):
        return arr
    ys = np.clip((np.arange(h) + 0.5) * arr.shape[0] / h - 0.5, 0, arr.shape[0] - 1)
    xs = np.clip((np.arange(w) + 0.5) * arr.shape[1] / w - 0.5, 0, arr.shape[1] - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, arr.shape[0] - 1), np.minimum(x0 + 1, arr.shape[1] - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = arr[y0][:, x0] * (1 - fx) + arr[y0][:, x1] * fx
    bottom = arr[y1][:, x0] * (1 - fx) + arr[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def smooth_field(rng: np.random.Generator, h: int, w: int, waves: int = 4) -> np.ndarray:
    """A few random low-frequency waves over the view, scaled to unit peak amplitude."""
    y, x = np.mgrid[0:h, 0:w]
    u, v = (x + 0.5) / w, (y + 0.5) / h
    field = np.zeros((h, w))
    for _ in range(waves):
        fu, fv = rng.uniform(-1.5, 1.5, 2)
        field += np.cos(2 * np.pi * (fu * u + fv * v) + rng.uniform(0, 2 * np.pi))
    return field / max(float(np.abs(field).max()), 1e-9)
