"""The procedural world's test split as a benchmark: `--dataset world=DIR`.

DIR is a folder written by `pipeline world render --split test --out DIR` (or an uncompressed tar
of it): `world.json`, and per image `NNNNNN.png`, `NNNNNN.depth.npy` (float32 z-depth in metres,
0 where invalid) and `NNNNNN.mask.npy` (bool validity: sky and hits beyond the scene's far
distance are invalid). Keys are the image stems (`000000`, ...), in order. The depth is exact,
so a perfect depth prediction scores AbsRel 0. A train split is read too, with a `warning` (in
`describe()`, so in predictions.json and summary.json; the CLI prints it on stderr): a model
trained on the world may have trained on its images.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import numpy as np

from evaluation.datasets.archive import open_archive
from evaluation.datasets.base import (
    DATASET_LOADERS,
    BenchmarkDataset,
    BenchmarkSample,
    DatasetError,
    DatasetRules,
)
from evaluation.datasets.decode import check_same_size, decode_npy, decode_rgb, rgb_shape_only
from pipeline.dataset.camera import Intrinsics, world_intrinsics
from pipeline.world.camera import Camera
from pipeline.world.files import (
    DEPTH_SUFFIX,
    FORMAT,
    MASK_SUFFIX,
    RECORD_SUFFIX,
    RGB_SUFFIX,
    WORLD_JSON,
)

SHOWN = 5  # incomplete images named in an error


@DATASET_LOADERS.register("world")
class WorldDataset(BenchmarkDataset):
    """A rendered world split; samples carry the mask file as `valid_mask`."""

    name = "world"
    title = "World"
    # Exact z-depth, validity from the mask file (sky and hits beyond the scene's far distance,
    # 150-400 m, are invalid), scored to 80 m as KITTI is (an outdoor scene seen from 1-10 m up;
    # the world places its objects at 2-80 m). Beyond it lies only ground and buildings near the
    # horizon, whose disparity is under 1/80 of a metre's: after the disparity-space fit a tiny
    # error there is a depth error of several times the depth, so a few such pixels per image
    # decided the mean AbsRel.
    rules = DatasetRules("world", 1e-3, 80.0, sharp_boundaries=True)
    intrinsics_source = (
        "the world's own camera: the scene camera in each image's record (NNNNNN.json), "
        "exactly as rendered; None for an image without its record"
    )

    @classmethod
    def expected_layout(cls) -> str:
        return (
            f"{WORLD_JSON} and NNNNNN{RGB_SUFFIX} / NNNNNN{DEPTH_SUFFIX} / NNNNNN{MASK_SUFFIX} "
            "files (a folder written by `pipeline world render --split test`)"
        )

    def __init__(self, path: str, **options: str) -> None:
        self.options_used = self.check_options(options)
        self.root = str(path)
        self.archive = open_archive(path, self.expected_layout())
        self.prefix = self._find_prefix()
        self.world = self._read_world()
        self._keys = self._list_keys()
        self.warning = self._train_split_warning()

    def _train_split_warning(self) -> str | None:
        """For a train split: a model trained on the world may have trained on these images."""
        if self.world.get("split") == "test":
            return None
        return (
            f"{self.root} is the world's {self.world.get('split')} split (seed "
            f"{self.world.get('seed')}): a model trained on this world may have trained on these "
            "images; score on a test split (`pipeline world render --split test`)"
        )

    def _find_prefix(self) -> str:
        """The folder (ending in '/', or '') holding the one world.json of the archive."""
        found = [n for n in self.archive.names() if posixpath.basename(n) == WORLD_JSON]
        if len(found) != 1:
            what = "no" if not found else f"{len(found)}"
            raise DatasetError(
                f"{self.root}: {what} {WORLD_JSON} file(s); expected {self.expected_layout()}"
            )
        head = posixpath.dirname(found[0])
        return f"{head}/" if head else ""

    def _read_world(self) -> dict[str, Any]:
        name = f"{self.prefix}{WORLD_JSON}"
        try:
            world = json.loads(self.archive.read(name).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"{self.archive.where(name)}: not valid JSON ({e})") from e
        if world.get("format") != FORMAT:
            raise DatasetError(
                f"{self.archive.where(name)}: format {world.get('format')!r}; expected {FORMAT!r}"
            )
        return world

    def _list_keys(self) -> list[str]:
        keys, incomplete = [], []
        for name in self.archive.names():
            if not name.startswith(self.prefix) or not name.endswith(RGB_SUFFIX):
                continue
            key = name[len(self.prefix) : -len(RGB_SUFFIX)]
            if "/" in key:
                continue
            if all(self._name(key, s) in self.archive for s in (DEPTH_SUFFIX, MASK_SUFFIX)):
                keys.append(key)
            else:
                incomplete.append(self.archive.where(name))
        if incomplete:
            raise DatasetError(
                f"{self.root}: {len(incomplete)} image(s) without their {DEPTH_SUFFIX} or "
                f"{MASK_SUFFIX} file, e.g. {', '.join(incomplete[:SHOWN])}; finish the render "
                "(run `pipeline world render` again with the same settings)"
            )
        if not keys:
            raise DatasetError(f"{self.root}: no images; expected {self.expected_layout()}")
        return sorted(keys)

    def _name(self, key: str, suffix: str) -> str:
        return f"{self.prefix}{key}{suffix}"

    def keys(self) -> list[str]:
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def _check_key(self, key: str) -> None:
        if key not in self._keys:
            raise DatasetError(f"{key!r} is not a sample of world at {self.root}")

    def load(self, key: str, rgb: bool = True) -> BenchmarkSample:
        self._check_key(key)
        rgb_name = self._name(key, RGB_SUFFIX)
        rgb_where = self.archive.where(rgb_name)
        decode = decode_rgb if rgb else rgb_shape_only
        image = decode(self.archive.read(rgb_name), rgb_where)
        depth = self._array(key, DEPTH_SUFFIX, "float32 z-depth [H, W] in metres")
        mask = self._array(key, MASK_SUFFIX, "a bool validity mask [H, W]")
        if depth.dtype != np.float32:
            where = self.archive.where(self._name(key, DEPTH_SUFFIX))
            raise DatasetError(f"{where}: dtype {depth.dtype}; expected float32 metres")
        for suffix, array in ((DEPTH_SUFFIX, depth), (MASK_SUFFIX, mask)):
            check_same_size(image, rgb_where, array, self.archive.where(self._name(key, suffix)))
        intrinsics = self._intrinsics(key, *image.shape[:2])
        return BenchmarkSample(key, image if rgb else None, depth, mask != 0, intrinsics)

    def _intrinsics(self, key: str, height: int, width: int) -> Intrinsics | None:
        """The camera the image was rendered with, from its record beside it (None without)."""
        name = self._name(key, RECORD_SUFFIX)
        if name not in self.archive:
            return None
        where = self.archive.where(name)
        try:
            record = json.loads(self.archive.read(name).decode("utf-8"))
            camera = Camera.from_json(record["scene"]["camera"])
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise DatasetError(
                f"{where}: cannot read the image's camera ({e!r}); expected the record "
                "`pipeline world render` writes (run it again to rewrite the split)"
            ) from e
        return world_intrinsics(camera, height, width)

    def _array(self, key: str, suffix: str, expected: str) -> np.ndarray:
        name = self._name(key, suffix)
        return decode_npy(self.archive.read(name), self.archive.where(name), expected)

    def load_rgb(self, key: str) -> np.ndarray:
        self._check_key(key)
        name = self._name(key, RGB_SUFFIX)
        return decode_rgb(self.archive.read(name), self.archive.where(name))

    def describe(self) -> dict[str, Any]:
        settings = {k: self.world.get(k) for k in ("seed", "split", "height", "width", "samples")}
        return {
            "name": self.name,
            "root": self.root,
            "layout": f"pipeline world render: {self.expected_layout()}",
            "source": self.archive.kind,
            "prefix": self.prefix,
            "split": f"world {settings['split']} split",
            "split_origin": "discovered",
            "count": len(self._keys),
            "entries": len(self._keys),
            "expected_count": int(self.world.get("images", len(self._keys))),
            "skipped": [],
            "options": dict(self.options_used),
            "inference_long_side": self.inference_long_side,
            "intrinsics_source": self.intrinsics_source,
            "world": {**settings, "generator": self.world.get("generator")},
            **({"warning": self.warning} if self.warning else {}),
        }
