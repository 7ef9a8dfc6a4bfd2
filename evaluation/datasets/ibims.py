"""iBims-1 (Koch et al., 2018) as its authors release it, the PNG variant `ibims1_core_raw.zip`
(with the `imagelist.txt` that comes beside it or inside it):

    rgb/<name>.png            RGB, 640x480
    depth/<name>.png          uint16, depth = value * 50 / 65535 metres (0 = no measurement)
    mask_invalid/<name>.png   nonzero where the depth is valid
    mask_transp/<name>.png    nonzero where no transparent or mirroring surface is
    imagelist.txt             the 100 names, one a line (optional: else every rgb/*.png)
    calib/<name>.txt          the image's 3x3 camera matrix (optional: its `intrinsics`)

The mask semantics are the official evaluation script's (`evaluate_ibims.py`, which multiplies
`mask_invalid`, `mask_transp` and depth != 0). The `.mat` variant (`ibims1_core_mat.zip`) holds
the same data and is not read; `edges/` and the plane masks are not needed.
"""

from __future__ import annotations

import io
import posixpath
import re

import numpy as np
from PIL import Image

from evaluation.datasets.base import (
    DATASET_LOADERS,
    BenchmarkSample,
    DatasetError,
    DatasetRules,
)
from evaluation.datasets.decode import check_same_size, depth_from_u16
from evaluation.datasets.intrinsics import fitted, parse_ibims_calib
from evaluation.datasets.marigold import SHOWN, Entry
from evaluation.datasets.release import ReleaseDataset
from pipeline.dataset.camera import Intrinsics
from pipeline.toolkit.messages import plain

DEPTH_SCALE = 65535.0 / 50.0  # stored value per metre: 65535 is 50 m
IMAGE_LIST = "imagelist.txt"
MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16B")


def decode_mask(data: bytes, where: str) -> np.ndarray:
    """bool `[H, W]` from a single-channel PNG: True where the pixel is nonzero."""
    expected = "a single-channel PNG mask"
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{where}: cannot decode ({plain(e)}); expected {expected}") from e
    if img.format != "PNG" or img.mode not in MASK_MODES:
        raise DatasetError(f"{where}: {img.format} image of mode {img.mode}; expected {expected}")
    return np.asarray(img) != 0


def _stem(name: str) -> str:
    """An image name of the list, without a `.png` or `.mat` ending if it has one."""
    base, ext = posixpath.splitext(name)
    return base if ext.lower() in (".png", ".mat") else name


@DATASET_LOADERS.register("ibims")
class IbimsDataset(ReleaseDataset):
    """The 100 images in `imagelist.txt` order (sorted names without it). Keys are
    `rgb/<name>`; the valid mask is `mask_invalid & mask_transp`. Native resolution."""

    name = "ibims"
    title = "iBims-1"
    # No published relative-depth protocol. Validity is the official evaluate_ibims.py's
    # (mask_invalid, mask_transp, depth > 0: the loader's mask), no range and no crop (our
    # choice).
    rules = DatasetRules("ibims", 0.0, float("inf"), sharp_boundaries=True)
    release = "iBims-1's ibims1_core_raw.zip (PNG variant)"
    rgb_pattern = r"rgb/(?P<name>[^/]+)\.png"
    rgb_hint = (
        "rgb/<name>.png, depth/<name>.png, mask_invalid/<name>.png and mask_transp/<name>.png"
    )
    expected_count = 100
    options = {}
    intrinsics_source = (
        "calibration file: calib/<name>.txt (for the 640x480 frames), scaled to the image's size; "
        "None where the layout has none"
    )

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        name = match["name"]
        return [f"depth/{name}.png"], [f"mask_invalid/{name}.png"]

    def select(self, entries: list[Entry]) -> list[Entry]:
        self.require([self._transparent(e) for e in entries], "transparency masks")
        listed = self._image_list()
        if listed is None:
            return entries
        by_name = {posixpath.basename(e.key): e for e in entries}
        absent = [n for n in listed if n not in by_name]
        if absent:
            raise DatasetError(
                f"{self.split_source}: {len(absent)} listed images are not in {self.root}, "
                f"e.g. {', '.join(absent[:SHOWN])}; expected rgb/<name>.png for every name"
            )
        return [by_name[n] for n in listed]

    def _image_list(self) -> list[str] | None:
        """The names of `imagelist.txt` in the dataset root or a folder above it, or None."""
        folder = (self.prefix or "").rstrip("/")
        while True:
            name = posixpath.join(folder, IMAGE_LIST)
            if name in self.archive:
                break
            if not folder:
                return None
            folder = posixpath.dirname(folder)
        self.split_source, self.split_origin = self.archive.where(name), "dataset"
        try:
            text = self.archive.read(name).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DatasetError(
                f"{self.split_source}: not text ({e}); expected one image name a line"
            ) from e
        names = [_stem(line.strip()) for line in text.splitlines() if line.strip()]
        if not names:
            raise DatasetError(f"{self.split_source}: empty; expected one image name a line")
        return names

    def _transparent(self, entry: Entry) -> str:
        stem = posixpath.basename(entry.rgb)
        return posixpath.join(posixpath.dirname(posixpath.dirname(entry.rgb)), "mask_transp", stem)

    def intrinsics(self, entry: Entry, height: int, width: int) -> Intrinsics | None:
        # No published constant checked: without the file, unknown.
        stem = posixpath.splitext(posixpath.basename(entry.rgb))[0]
        name = posixpath.join(posixpath.dirname(posixpath.dirname(entry.rgb)), "calib", stem)
        name += ".txt"
        if name not in self.archive:
            return None
        return fitted(parse_ibims_calib(self.read(name), self.where(name)), height, width)

    def make_sample(self, entry: Entry, rgb: np.ndarray) -> BenchmarkSample:
        rgb_where, where = self.where(entry.rgb), self.where(entry.depth)
        depth = depth_from_u16(self.read(entry.depth), where, DEPTH_SCALE)
        check_same_size(rgb, rgb_where, depth, where)
        valid = np.ones(depth.shape, dtype=bool)
        assert entry.mask is not None
        for name in (entry.mask, self._transparent(entry)):
            mask_where = self.where(name)
            mask = decode_mask(self.read(name), mask_where)
            check_same_size(rgb, rgb_where, mask, mask_where)
            valid &= mask
        return BenchmarkSample(entry.key, rgb, depth, valid)
