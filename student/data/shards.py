"""Lockstep access to shard i of a dataset: image tar, plan shard and the teachers' label shards.

`OpenShard` opens all of them, checks that their keys are equal and in the same order (a label
shard made for another image shard, or reordered, is refused with the shard and first differing
key named), then serves one key at a time by random access: `image(key)` decodes only that image,
`read(teacher, key, name)` decodes only that label map. Files are opened in the process that
uses them (DataLoader workers open their own), never inherited.

`ShardPool` opens shards on demand and closes each when nothing refers to it any more.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.dataset import DatasetInfo
from pipeline.dataset.plan import load_plan_shard
from pipeline.images.decode import decode_rgb
from pipeline.images.shards import ImageShardReader
from pipeline.labels.column import LabelColumn
from pipeline.labels.reader import ShardReader
from pipeline.labels.store import open_reader
from pipeline.toolkit import tario
from student.data.columns import to_disparity
from student.data.samples import view_focal


@dataclass(frozen=True)
class ColumnSpec:
    """What a worker needs to read one teacher column (picklable, no open files)."""

    column: LabelColumn
    """The teacher's label column (its manifest already read): where shard i is."""
    conversion: str
    """'identity' (disparity), 'inverse' (metric depth → 1/d) or 'depth' (metres, for a metric
    student), see `columns.py`."""

    @property
    def name(self) -> str:
        """Column (teacher) name under `labels/`."""
        return self.column.name


def decode_reduced(data: bytes, request: tuple[int, int]) -> tuple[np.ndarray, int, list[int]]:
    """Decode a stored image, letting JPEG's DCT scaling shrink it by d ∈ {1, 2, 4, 8} as long as
    it stays at least `request` (W, H) pixels (PNG: d = 1).

    Returns `(uint8 [ceil(H/d), ceil(W/d), 3], d, [H, W] of the stored image)`. Reduced pixel j
    covers original pixels [d·j, d·j + d), so original coordinates map by `/ d`. Much cheaper than
    a full decode when the crop is shrunk ≥ 2× anyway (the DCT downscale is itself a low-pass).
    """
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        d = 1
        if img.format == "JPEG":
            drafted = img.draft("RGB", (max(1, request[0]), max(1, request[1])))
            if drafted is not None:
                d = max(1, round(width / drafted[1][2]))
        if img.mode != "RGB":
            img = img.convert("RGB")
        return np.array(img, dtype=np.uint8), d, [height, width]


def first_difference(a: Sequence[str], b: Sequence[str]) -> int:
    """The first position where two key lists differ (the shorter length if one is a prefix)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def check_lockstep(
    shard: str, reference: Path, keys: Sequence[str], other: Path, other_keys: Sequence[str]
) -> None:
    """Raise `ShardError` naming the shard and the first differing key unless the lists match."""
    if list(keys) == list(other_keys):
        return
    i = first_difference(keys, other_keys)
    mine = keys[i] if i < len(keys) else "<end of shard>"
    theirs = other_keys[i] if i < len(other_keys) else "<end of shard>"
    raise tario.ShardError(
        f"shard {shard}: keys of {other} are not in lockstep with {reference}: at position {i} "
        f"it has {theirs!r} where the image shard has {mine!r} ({len(other_keys)} vs {len(keys)} "
        "keys). The file belongs to another image shard or is corrupt: re-create it "
        "(`pipeline prepare` for a plan shard, `labelgen run` into a fresh column for labels)"
    )


def check_origin(path: Path, meta: Mapping[str, Any], column: str, shard: str) -> None:
    """Refuse a label shard that `labelgen run` wrote for another column or shard (a file copied
    or moved by hand): its own metadata names both."""
    made_for = (meta.get("column", column), meta.get("shard", shard))
    if made_for != (column, shard):
        raise ValueError(
            f"{path} holds labels of column {made_for[0]!r}, shard {made_for[1]}, not of column "
            f"{column!r}, shard {shard}: it was copied or moved there. Run `pipeline verify` on "
            "the dataset and relabel the shards it names"
        )


class OpenShard:
    """Shard `index` of a dataset opened in lockstep for the given teacher columns."""

    def __init__(self, info: DatasetInfo, index: int, columns: Mapping[str, ColumnSpec]) -> None:
        shard = info.shards[index]
        layout = info.layout
        self.index, self.name = index, shard.name
        self.image_path = layout.image_shard(index)
        self.images = ImageShardReader(self.image_path)
        self.keys = self.images.keys
        if len(self.keys) != shard.count:
            raise tario.ShardError(
                f"shard {shard.name}: {self.image_path} holds {len(self.keys)} keys but "
                f"dataset.json says {shard.count}; the dataset is inconsistent: prepare it again"
            )
        plan_path = layout.plan_shard(index)
        self.plans = load_plan_shard(plan_path)
        check_lockstep(shard.name, self.image_path, self.keys, plan_path, list(self.plans))
        self.cameras = info.shard_intrinsics(index)  # {key: source intrinsics}, known ones only
        self.columns = dict(columns)
        self.readers: dict[str, ShardReader] = {}
        try:
            for name, spec in self.columns.items():
                path = spec.column.shard_path(index)
                reader = open_reader(path, expected_plan_sha256=shard.plan_sha256)
                self.readers[name] = reader
                check_origin(path, reader.extra_meta, name, shard.name)
                check_lockstep(shard.name, self.image_path, self.keys, path, reader.keys)
        except BaseException:
            self.close()
            raise

    def focal(self, key: str, region: int, size: int) -> tuple[float, float]:
        """(fx', fy') of the student's `size`² view of region `region` of `key` (-1: the whole
        image; `samples.view_focal`), NaN when the image's camera is unknown."""
        return view_focal(self.cameras.get(key), self.plans[key], region, size)

    def errors(self, key: str) -> dict[str, str]:
        """`{teacher: error}` for the teachers whose label record of `key` has an error."""
        out = {}
        for name, reader in self.readers.items():
            error = reader.record(key).get("error")
            if error is not None:
                out[name] = str(error)
        return out

    def image(self, key: str, request: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
        """Decode the image of `key`: `(uint8 [h, w, 3], d)`, reduced by d (see `decode_reduced`;
        d = 1 without `request`). The size is checked against the plan."""
        data, ext = self.images.read(key)
        try:
            if request is None:
                rgb, d, size = decode_rgb(data), 1, None
            else:
                rgb, d, size = decode_reduced(data, request)
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for corrupt images
            raise tario.ShardError(
                f"{self.image_path}: key {key!r} ({key}.{ext}) does not decode ({e}); check "
                "the dataset with `pipeline verify` and prepare it again"
            ) from e
        height, width = self.plans[key]["size"]
        got = list(rgb.shape[:2]) if size is None else list(size)
        reduced = [-(-height // d), -(-width // d)]
        if got != [height, width] or list(rgb.shape[:2]) != reduced:
            raise tario.ShardError(
                f"{self.image_path}: {key} decodes to {got} (H, W) but the plan says "
                f"{[height, width]}; the dataset is inconsistent: prepare it again"
            )
        return rgb, d

    def read(self, teacher: str, key: str, name: str) -> np.ndarray:
        """One label map of one key, as disparity: float32 (h, w), non-finite → NaN."""
        values = self.readers[teacher].read(key, name)
        return to_disparity(values, self.columns[teacher].conversion)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers = {}
        self.images.close()


class ShardPool:
    """Opens shards on demand; `hold`/`drop` count references and close a shard at zero."""

    def __init__(self, info: DatasetInfo, columns: Mapping[str, ColumnSpec]) -> None:
        self.info = info
        self.columns = dict(columns)
        self._open: dict[int, OpenShard] = {}
        self._refs: Counter[int] = Counter()

    def hold(self, index: int) -> OpenShard:
        """The open shard `index` (opened now if needed), with one more reference."""
        if index not in self._open:
            self._open[index] = OpenShard(self.info, index, self.columns)
        self._refs[index] += 1
        return self._open[index]

    def get(self, index: int) -> OpenShard:
        return self._open[index]

    def drop(self, index: int) -> None:
        self._refs[index] -= 1
        if self._refs[index] <= 0:
            del self._refs[index]
            self._open.pop(index).close()

    @property
    def open_shards(self) -> list[int]:
        return sorted(self._open)

    def close_all(self) -> None:
        for shard in self._open.values():
            shard.close()
        self._open.clear()
        self._refs.clear()


def describe_errors(errors: Mapping[str, Mapping[str, Any]]) -> str:
    """'key (teacher: error; ...)' for a log line, at most 5 keys."""
    parts = [
        f"{key} ({'; '.join(f'{t}: {e}' for t, e in errs.items())})"
        for key, errs in list(errors.items())[:5]
    ]
    more = len(errors) - len(parts)
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")
