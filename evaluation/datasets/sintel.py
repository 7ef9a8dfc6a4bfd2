"""MPI Sintel (Butler et al., 2012) as its authors distribute it: the rendered frames of
`MPI-Sintel-training_images.zip` and the depth of `MPI-Sintel-depth-training-20150305.zip`,
unpacked into one folder:

    training/final/<scene>/frame_XXXX.png     RGB, 1024x436, final render pass (also clean/)
    training/depth/<scene>/frame_XXXX.dpt     depth in scene units (metres), float32

A `.dpt` file is the Sintel depth format: the float32 tag 202021.25 (the bytes `PIEH`), int32
width, int32 height, then width x height float32 values, row-major, all little-endian. The
renders have no invalid pixels; the sky is very far away and falls outside the protocol's range.
"""

from __future__ import annotations

import re

import numpy as np

from evaluation.datasets.base import (
    DATASET_LOADERS,
    BenchmarkSample,
    DatasetError,
    DatasetRules,
)
from evaluation.datasets.decode import check_same_size
from evaluation.datasets.intrinsics import parse_sintel_cam
from evaluation.datasets.marigold import Entry
from evaluation.datasets.release import ReleaseDataset
from pipeline.dataset.camera import Intrinsics

DPT_TAG = 202021.25
DPT_HEADER = 12  # tag, width, height
DPT_LAYOUT = (
    "a Sintel .dpt depth file (float32 tag 202021.25 'PIEH', int32 width, int32 height, then "
    "width x height little-endian float32)"
)
RENDER_PASSES = ("final", "clean")
TRAINING_FRAMES = 1064  # the 23 training scenes; the test scenes have no depth


def decode_dpt(data: bytes, where: str) -> np.ndarray:
    """float32 `[H, W]` depth from the bytes of a Sintel `.dpt` file."""
    if len(data) < DPT_HEADER:
        raise DatasetError(f"{where}: {len(data)} bytes; expected {DPT_LAYOUT}")
    tag = float(np.frombuffer(data, "<f4", 1)[0])
    if tag != DPT_TAG:
        raise DatasetError(f"{where}: tag {data[:4]!r} ({tag}); expected {DPT_LAYOUT}")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, offset=4))
    size = width * height
    if width <= 0 or height <= 0 or len(data) != DPT_HEADER + 4 * size:
        raise DatasetError(
            f"{where}: {len(data)} bytes for width {width}, height {height}; expected {DPT_LAYOUT} "
            f"= {DPT_HEADER + 4 * max(size, 0)} bytes"
        )
    return np.frombuffer(data, "<f4", size, offset=DPT_HEADER).reshape(height, width).copy()


@DATASET_LOADERS.register("sintel")
class SintelDataset(ReleaseDataset):
    """Every frame of the 23 training scenes that have depth (1064), final pass by default
    (`render_pass=clean` for the clean renders); `split=FILE` lists 'RGB DEPTH' lines instead.
    Keys are `training/<pass>/<scene>/frame_XXXX`. Native resolution (1024x436)."""

    name = "sintel"
    title = "Sintel"
    # Valid depth and clip (0.001, 70) m, the range of DepthCrafter's published benchmark
    # (Tencent/DepthCrafter benchmark/eval/eval.sh `--dataset_max_depth 70`, eval.py
    # `1e-3 < gt < max`), which aligns per video where this protocol aligns per frame. Others:
    # SharpDepth's loader 200 m, MoGe a cut relative to each image's 1st percentile; MiDaS
    # published no evaluation code.
    rules = DatasetRules("sintel", 1e-3, 70.0, sharp_boundaries=True)
    release = (
        "MPI Sintel's MPI-Sintel-training_images.zip and MPI-Sintel-depth-training-20150305.zip "
        "unpacked into one folder"
    )
    rgb_pattern = r"training/(?P<render>final|clean)/(?P<scene>[^/]+)/(?P<frame>frame_\d{4})\.png"
    rgb_hint = "training/final/<scene>/frame_XXXX.png and training/depth/<scene>/frame_XXXX.dpt"
    expected_count = TRAINING_FRAMES
    options = {"split": None, "render_pass": RENDER_PASSES}
    default_options = {"render_pass": "final"}
    intrinsics_source = (
        "calibration file: training/camdata_left/<scene>/frame_XXXX.cam (the depth release's "
        "per-frame camera); None where the layout has none"
    )

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        return [f"training/depth/{match['scene']}/{match['frame']}.dpt"], None

    def select(self, entries: list[Entry]) -> list[Entry]:
        render = self.options_used["render_pass"]
        kept = [e for e in entries if f"/training/{render}/" in f"/{e.rgb}"]
        if entries and not kept:
            raise DatasetError(
                f"{self.root}: none of the {len(entries)} frames listed ({self.split_source}) "
                f"is of the {render} pass; choose render_pass={'|'.join(RENDER_PASSES)}"
            )
        return kept

    def intrinsics(self, entry: Entry, height: int, width: int) -> Intrinsics | None:
        # The camera varies per frame (focal length changes within scenes): no constant.
        name = entry.depth.replace("training/depth/", "training/camdata_left/")[:-4] + ".cam"
        if name not in self.archive:
            return None
        return parse_sintel_cam(self.read(name), self.where(name), (height, width))

    def make_sample(self, entry: Entry, rgb: np.ndarray) -> BenchmarkSample:
        where = self.where(entry.depth)
        depth = decode_dpt(self.read(entry.depth), where)
        check_same_size(rgb, self.where(entry.rgb), depth, where)
        return BenchmarkSample(entry.key, rgb, depth)
