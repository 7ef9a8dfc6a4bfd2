"""The one colour map of the project's pictures: a perceptual dark-to-bright map (magma-like;
luminance rises monotonically), used for depth maps and error maps alike."""

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


def colorize_robust(values: np.ndarray) -> np.ndarray:
    """uint8 RGB `[H, W, 3]` of a map scaled to its own 2nd..98th percentiles (NaN shown as the
    low end): for maps of unknown scale and shift, such as raw disparity."""
    finite = np.isfinite(values)
    lo, hi = np.percentile(values[finite], [2, 98]) if finite.any() else (0.0, 1.0)
    return apply_colormap((np.nan_to_num(values, nan=lo) - lo) / max(hi - lo, 1e-12))
