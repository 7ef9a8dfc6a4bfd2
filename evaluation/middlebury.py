"""The built-in benchmark sample: Middlebury 2014 "Motorcycle" as scikit-image ships it.

`skimage.data.stereo_motorcycle()` gives the quarter-resolution left view (500×741) and its
ground-truth disparity (invalid pixels are +inf). Depth in metres from the quarter-resolution
calibration: Z = baseline · f / (disparity + doffs).
"""

from __future__ import annotations

import numpy as np

FOCAL_PX = 994.978
DOFFS_PX = 31.086
BASELINE_M = 0.193001


def load_motorcycle() -> tuple[np.ndarray, np.ndarray]:
    """`(rgb uint8 [500, 741, 3], depth float64 [500, 741] in metres, +inf where invalid)`."""
    from skimage import data

    left, _right, disparity = data.stereo_motorcycle()
    disparity = np.asarray(disparity, dtype=np.float64)
    depth = np.full(disparity.shape, np.inf)
    valid = np.isfinite(disparity)
    depth[valid] = BASELINE_M * FOCAL_PX / (disparity[valid] + DOFFS_PX)
    return np.ascontiguousarray(left), depth
