"""The one colour map of the project's pictures and its scaling: a perceptual dark-to-bright map
(magma-like; luminance rises monotonically), used for depth maps and error maps alike.

`colorize(values, lo, hi)` maps a fixed range (error maps, panels that share a range);
`robust_range` is the range of a map of unknown scale and shift (its 2nd..98th percentiles),
and `colorize_robust` the two together. Non-finite and invalid pixels are grey (`INVALID`)."""

from __future__ import annotations

import numpy as np

ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def apply_colormap(t: np.ndarray) -> np.ndarray:
    """uint8 RGB `[..., 3]` of values `t` in [0, 1] (clipped): 0 darkest, 1 brightest."""
    pos = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0) * (len(ANCHORS) - 1)
    i = np.minimum(pos.astype(int), len(ANCHORS) - 2)
    frac = (pos - i)[..., None]
    return np.rint(ANCHORS[i] * (1 - frac) + ANCHORS[i + 1] * frac).astype(np.uint8)


INVALID = (128, 128, 128)
"""The grey of non-finite and masked pixels (never a colour of the map)."""
LUT = apply_colormap(np.linspace(0.0, 1.0, 256))
"""The colour map as 256 RGB entries, dark to bright."""


def colorize(
    values: np.ndarray, lo: float, hi: float, invalid_mask: np.ndarray | None = None
) -> np.ndarray:
    """uint8 RGB `[H, W, 3]`: `lo` → darkest, `hi` → brightest (lo > hi reverses), clipped.
    Non-finite values and `invalid_mask` pixels are grey."""
    values = np.asarray(values, dtype=np.float32)
    span = float(hi) - float(lo)
    if abs(span) < 1e-12:
        span = 1e-12 if span >= 0 else -1e-12
    t = (values - np.float32(lo)) * np.float32(255.0 / span)
    invalid = ~np.isfinite(t)
    index = np.clip(np.nan_to_num(t, nan=0.0, posinf=255.0, neginf=0.0), 0, 255)
    image = LUT[np.rint(index).astype(np.uint8)]
    if invalid_mask is not None:
        invalid |= np.asarray(invalid_mask, dtype=bool)
    image[invalid] = INVALID
    return image


def robust_range(values: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """The 2nd and 98th percentiles of the finite (and `valid`) values; (0, 1) if there are
    none."""
    values = np.asarray(values)
    ok = np.isfinite(values) if valid is None else np.isfinite(values) & valid
    if not ok.any():
        return 0.0, 1.0
    lo, hi = np.percentile(values[ok], [2, 98])
    return float(lo), float(hi)


def colorize_robust(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB `[H, W, 3]` of a map stretched over its own `robust_range` (low dark, high
    bright; pixels outside `valid` grey): for maps of unknown scale and shift, such as raw
    disparity."""
    lo, hi = robust_range(values, valid)
    return colorize(values, lo, hi, invalid_mask=None if valid is None else ~valid)
