"""The built-in benchmark: Middlebury 2014 "Motorcycle" as scikit-image ships it (no path)."""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluation.datasets.base import (
    DATASET_LOADERS,
    BenchmarkDataset,
    BenchmarkSample,
    DatasetError,
    DatasetRules,
)
from evaluation.datasets.intrinsics import MOTORCYCLE_FULL, MOTORCYCLE_FULL_SIZE, centred
from evaluation.middlebury import load_motorcycle

KEY = "motorcycle"


@DATASET_LOADERS.register("middlebury")
class MiddleburyDataset(BenchmarkDataset):
    """One sample, key "motorcycle": the quarter-resolution left view and its depth in metres
    (+inf where the disparity is unknown)."""

    name = "middlebury"
    title = "Middlebury"
    rules = DatasetRules("middlebury", 1e-3, float("inf"), sharp_boundaries=True)
    needs_path = False
    intrinsics_source = (
        "published constants: Motorcycle-perfect/calib.txt of Middlebury 2014 (cam0, full size), "
        "scaled to scikit-image's quarter-size copy"
    )

    @classmethod
    def expected_layout(cls) -> str:
        return "no path: the sample ships with scikit-image"

    def __init__(self, path: str | None = None, **options: str) -> None:
        if path:
            raise DatasetError(f"middlebury is built in and takes no path (got {path})")
        self.options_used = self.check_options(options)
        self.root = ""

    def keys(self) -> list[str]:
        return [KEY]

    def load(self, key: str, rgb: bool = True) -> BenchmarkSample:
        if key != KEY:
            raise DatasetError(f"{key!r} is not a sample of middlebury; its one key is {KEY!r}")
        rgb, depth = load_motorcycle()
        full = centred(*MOTORCYCLE_FULL, MOTORCYCLE_FULL_SIZE)
        intrinsics = full.resized(*rgb.shape[:2])
        return BenchmarkSample(
            KEY, rgb.astype(np.uint8), depth.astype(np.float32), None, intrinsics
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": "",
            "layout": "built in: skimage.data.stereo_motorcycle (Middlebury 2014, quarter size)",
            "source": "builtin",
            "prefix": "",
            "split": "builtin",
            "split_origin": "builtin",
            "count": 1,
            "entries": 1,
            "expected_count": 1,
            "skipped": [],
            "options": {},
            "inference_long_side": self.inference_long_side,
            "intrinsics_source": self.intrinsics_source,
        }
