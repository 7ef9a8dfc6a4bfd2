"""The Middlebury 2014 stereo datasets (Scharstein et al., 2014) as distributed, one
`<Scene>-perfect.zip` per scene, unpacked side by side:

    <Scene>-perfect/im0.png     left view, RGB, full resolution (about 3000x2000)
    <Scene>-perfect/disp0.pfm   its ground-truth disparity in pixels, inf where unknown
    <Scene>-perfect/calib.txt   cam0=[f 0 cx; 0 f cy; 0 0 1], doffs, baseline (mm), width, ...

Depth in metres is `baseline * f / (disparity + doffs) / 1000`; unknown disparities (inf, NaN)
and non-positive `disparity + doffs` become +inf (invalid). PFM is the greyscale `Pf` format:
the header `Pf`, width and height, a scale whose sign gives the byte order (negative =
little-endian), then float32 rows from the bottom of the image to the top.
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
from evaluation.datasets.intrinsics import centred
from evaluation.datasets.marigold import Entry
from evaluation.datasets.release import ReleaseDataset

PFM_LAYOUT = (
    "a greyscale PFM (header 'Pf', width height, scale < 0 for little-endian, then float32 "
    "rows bottom to top)"
)
PFM_HEADER = re.compile(rb"\A(P[Ff])\s+(\d+)\s+(\d+)\s+(\S+)\s")
CALIB_LAYOUT = (
    "a Middlebury calib.txt with lines cam0=[f 0 cx; 0 f cy; 0 0 1], doffs=..., baseline=... (mm)"
)
SCENES_WITH_GT = 23


def decode_pfm(data: bytes, where: str) -> np.ndarray:
    """float32 `[H, W]` of a greyscale PFM, top row first."""
    head = PFM_HEADER.match(data[:256])
    if head is None:
        raise DatasetError(f"{where}: no PFM header; expected {PFM_LAYOUT}")
    if head[1] == b"PF":
        raise DatasetError(f"{where}: a colour PFM (PF); expected {PFM_LAYOUT}")
    width, height = int(head[2]), int(head[3])
    try:
        scale = float(head[4])
    except ValueError:
        scale = float("nan")
    if not np.isfinite(scale) or scale == 0:
        raise DatasetError(f"{where}: PFM scale {head[4]!r}; expected {PFM_LAYOUT}")
    size, start = width * height, head.end()
    if width == 0 or height == 0 or len(data) - start != 4 * size:
        raise DatasetError(
            f"{where}: {len(data) - start} data bytes for {width}x{height}; expected {PFM_LAYOUT} "
            f"= {4 * size} bytes"
        )
    values = np.frombuffer(data, "<f4" if scale < 0 else ">f4", size, offset=start)
    return values.reshape(height, width)[::-1].astype(np.float32)


def parse_calib(data: bytes, where: str) -> dict[str, float]:
    """`f`, `cx`, `cy` (cam0), `doffs`, `baseline` (mm) and, when the file gives them, `width` and
    `height`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{where}: not text ({e}); expected {CALIB_LAYOUT}") from e
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        rows = [row.split() for row in fields["cam0"].strip("[]").split(";")]
        matrix = np.array(rows, dtype=np.float64)
        out = {k: float(fields[k]) for k in ("doffs", "baseline")}
        out.update({k: float(fields[k]) for k in ("width", "height") if k in fields})
    except (KeyError, ValueError) as e:
        raise DatasetError(f"{where}: cannot read {e}; expected {CALIB_LAYOUT}") from e
    if matrix.shape != (3, 3) or not matrix[0, 0] > 0 or not out["baseline"] > 0:
        raise DatasetError(
            f"{where}: cam0 {fields['cam0']!r}, baseline {fields['baseline']!r}; expected "
            f"{CALIB_LAYOUT} with f > 0 and baseline > 0"
        )
    return {"f": float(matrix[0, 0]), "cx": float(matrix[0, 2]), "cy": float(matrix[1, 2]), **out}


def depth_from_disparity(disparity: np.ndarray, calib: dict[str, float]) -> np.ndarray:
    """float32 metres, +inf where the disparity is unknown or `disparity + doffs <= 0`."""
    shifted = disparity.astype(np.float64) + calib["doffs"]
    depth = np.full(disparity.shape, np.inf)
    known = np.isfinite(shifted) & (shifted > 0)
    depth[known] = calib["baseline"] * calib["f"] / shifted[known] / 1000.0
    return depth.astype(np.float32)


@DATASET_LOADERS.register("middlebury2014")
class Middlebury2014Dataset(ReleaseDataset):
    """The 23 scenes with ground truth (`-perfect` calibration), left view only, at full
    resolution; keys are `<Scene>-perfect/im0`. Not the built-in `middlebury` sample."""

    name = "middlebury2014"
    title = "Middlebury 2014"
    # No published relative-depth protocol; the built-in sample's rules (our choice): depth
    # above 1 mm, unknown disparity invalid, no crop.
    rules = DatasetRules("middlebury2014", 1e-3, float("inf"), sharp_boundaries=True)
    release = "the Middlebury 2014 stereo datasets, <Scene>-perfect.zip unpacked side by side"
    rgb_pattern = r"(?P<scene>[^/]+)-perfect/im0\.png"
    rgb_hint = "<Scene>-perfect/im0.png, disp0.pfm and calib.txt"
    expected_count = SCENES_WITH_GT
    intrinsics_source = "calibration file: <Scene>-perfect/calib.txt, cam0 (left view)"

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        return [f"{match['scene']}-perfect/disp0.pfm"], None

    def select(self, entries: list[Entry]) -> list[Entry]:
        self.require([self.sibling(e.depth, "calib.txt") for e in entries], "calibration files")
        return entries

    def make_sample(self, entry: Entry, rgb: np.ndarray) -> BenchmarkSample:
        rgb_where, where = self.where(entry.rgb), self.where(entry.depth)
        disparity = decode_pfm(self.read(entry.depth), where)
        check_same_size(rgb, rgb_where, disparity, where)
        calib_name = self.sibling(entry.depth, "calib.txt")
        calib_where = self.where(calib_name)
        calib = parse_calib(self.read(calib_name), calib_where)
        size = (calib.get("height", rgb.shape[0]), calib.get("width", rgb.shape[1]))
        if size != rgb.shape[:2]:
            raise DatasetError(
                f"{calib_where}: width {size[1]:g}, height {size[0]:g}; expected the size of "
                f"{rgb_where} ({rgb.shape[1]}x{rgb.shape[0]})"
            )
        sample = BenchmarkSample(entry.key, rgb, depth_from_disparity(disparity, calib))
        f, cx, cy = calib["f"], calib["cx"], calib["cy"]
        sample.intrinsics = centred(f, f, cx, cy, rgb.shape[:2])
        return sample
