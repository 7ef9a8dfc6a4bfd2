"""`zarr` label backend: one Zarr v3 group (a directory `NNNNNN.zarr`) per shard.

Layout:

    NNNNNN.zarr/
      zarr.json     group; attributes {"depth_labels": shard metadata (format, codec,
                    plan_sha256, keys, extra), "records": {key: record},
                    "locations": {key: {map name: [array path, row or null]}}}
      sc/           (N_sc, H, W): every `r{k}.sc` map, rows in write order (key-major)
      tiles/        (N_tiles, H, W): every `r{k}.t{j}` map, rows in write order
      full/<key>    (H, W): one array per key, one chunk (`full` maps differ in shape)

`sc` and `tiles` use zarr chunks of one map (the read unit) inside zarr shards of
`rows_per_shard` maps (the write unit, one file each). The writer buffers rows and writes whole
zarr shards, so no file is rewritten. All `sc` maps of a shard must share one shape, and all tile
maps another (taken from the first map of each kind; a mismatch is rejected before anything of
that key is written). The number of views per key may vary. Fill value NaN: a missing chunk
reads as NaN, which the reader detects against the record's NaN count.

Following `reference/storage.md`: one writer per shard, into a hidden temporary directory renamed
when complete; no batch `oindex` (one map per read); zarr is not fork-safe, so the reader parses
`zarr.json` itself and opens arrays lazily, again after a fork.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.labels.reader import ShardReader
from pipeline.labels.record import map_kind
from pipeline.labels.writer import ShardWriter
from pipeline.toolkit.atomic import read_json
from pipeline.toolkit.tario import ShardError

ROWS_PER_SHARD = 32
STACKS = {"sc": "sc", "tile": "tiles"}  # map kind -> array path
ARRAY_PATH_RE = re.compile(r"^(?:sc|tiles|full/[A-Za-z0-9][A-Za-z0-9_-]{0,79})$")


def _zarr():
    import zarr

    return zarr


class _Stack:
    """Rows of one stacked array, buffered until a whole zarr shard can be written."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.shape: tuple[int, int] | None = None
        self.buffer: list[np.ndarray] = []
        self.rows = 0  # rows handed out so far
        self.array: Any = None


class ZarrShardWriter(ShardWriter):
    name = "zarr"
    suffix = ".zarr"

    def __init__(self, path: Path, *, rows_per_shard: int = ROWS_PER_SHARD, **kwargs: Any) -> None:
        if not (isinstance(rows_per_shard, int) and rows_per_shard >= 1):
            raise ValueError(f"rows_per_shard must be a positive int, got {rows_per_shard!r}")
        self.rows_per_shard = rows_per_shard
        super().__init__(path, **kwargs)

    def _begin(self, tmp: Path) -> None:
        self._group = _zarr().open_group(store=str(tmp), mode="w-", zarr_format=3)
        self._stacks = {kind: _Stack(path) for kind, path in STACKS.items()}
        self._records: dict[str, dict] = {}
        self._locations: dict[str, dict[str, list]] = {}

    def _create(self, path: str, shape: tuple[int, ...], chunks, shards=None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "numcodecs codecs are not in the Zarr v3 spec"
            return self._group.create_array(
                path,
                shape=shape,
                chunks=chunks,
                shards=shards,
                fill_value=np.nan,
                **self.codec.zarr_kwargs(),
            )

    def _check_maps(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        seen: dict[str, tuple[int, int]] = {}
        for name, arr in arrays.items():
            kind = map_kind(name)
            if kind == "full":
                continue
            expected = self._stacks[kind].shape or seen.setdefault(kind, arr.shape)
            if arr.shape != expected:
                raise ValueError(
                    f"{self.path}: key {key!r}, map {name!r} has shape {arr.shape} but this "
                    f"shard's {kind} maps are {expected}; the zarr backend stores all {kind} "
                    "maps of a shard in one array (use the wds backend for mixed shapes)"
                )

    def _encode_map(self, arr: np.ndarray) -> np.ndarray:
        return self.codec.to_storage(arr)  # zarr compresses in its own codec pipeline

    def _put_map(self, key: str, name: str, storage: np.ndarray) -> None:
        kind = map_kind(name)
        if kind == "full":
            path = f"full/{key}"
            self._create(path, storage.shape, chunks=storage.shape)[...] = storage
            self._locations.setdefault(key, {})[name] = [path, None]
            return
        stack = self._stacks[kind]
        stack.shape = stack.shape or storage.shape
        stack.buffer.append(storage)
        self._locations.setdefault(key, {})[name] = [stack.path, stack.rows]
        stack.rows += 1
        if len(stack.buffer) == self.rows_per_shard:
            self._flush(stack)

    def _flush(self, stack: _Stack) -> None:
        """Write the buffered rows as (the start of) one zarr shard."""
        if not stack.buffer:
            return
        h, w = stack.shape
        if stack.array is None:
            chunks, shards = (1, h, w), (self.rows_per_shard, h, w)
            stack.array = self._create(stack.path, (stack.rows, h, w), chunks, shards)
        else:
            stack.array.resize((stack.rows, h, w))
        start = stack.rows - len(stack.buffer)
        stack.array[start : stack.rows] = np.stack(stack.buffer)
        stack.buffer = []

    def _put_record(self, key: str, record: dict) -> None:
        self._records[key] = record
        self._locations.setdefault(key, {})

    def _finish(self) -> None:
        for stack in self._stacks.values():
            self._flush(stack)
        attrs = {"depth_labels": self.meta, "records": self._records, "locations": self._locations}
        self._group.attrs.put(attrs)
        return None

    def _discard(self) -> None:
        self._stacks = {}


class ZarrShardReader(ShardReader):
    name = "zarr"
    suffix = ".zarr"

    def __init__(self, path: Path, *, expected_plan_sha256: str | None = None) -> None:
        self._arrays: dict[str, Any] = {}
        self._pid = os.getpid()
        super().__init__(path, expected_plan_sha256=expected_plan_sha256)

    def _load_meta(self) -> dict:
        try:
            group = read_json(self.path / "zarr.json")
        except (FileNotFoundError, NotADirectoryError, ValueError) as e:
            raise ShardError(
                f"{self.path}: no readable zarr.json ({e}); re-create this shard"
            ) from e
        attrs = group.get("attributes") if isinstance(group, dict) else None
        if not isinstance(attrs, dict) or group.get("node_type") != "group":
            raise ShardError(f"{self.path}: not a Zarr v3 group; re-create this shard")
        meta = attrs.get("depth_labels")
        self._all_records = attrs.get("records")
        self._locations = attrs.get("locations")
        keys = meta.get("keys") if isinstance(meta, dict) else None
        for table in (self._all_records, self._locations):
            if not isinstance(table, dict) or list(table) != keys:
                raise ShardError(f"{self.path}: records or map locations do not match the keys")
        return meta

    def _load_record(self, key: str) -> dict:
        record = self._all_records[key]
        if not isinstance(record, dict) or not isinstance(record.get("maps"), dict):
            raise ShardError(f"{self.path}: record of key {key!r} is malformed")
        return record

    def _location(self, key: str, name: str) -> tuple[str, int | None]:
        loc = self._locations[key].get(name)
        ok = isinstance(loc, list) and len(loc) == 2 and isinstance(loc[0], str)
        ok = ok and ARRAY_PATH_RE.match(loc[0]) is not None
        ok = ok and (loc[1] is None or (isinstance(loc[1], int) and loc[1] >= 0))
        if not ok:
            raise ShardError(f"{self.path}: bad location {loc!r} for map {name!r} of key {key!r}")
        return loc[0], loc[1]

    def _array(self, path: str) -> Any:
        if self._pid != os.getpid():  # forked: never reuse the parent's zarr objects
            self._arrays, self._pid = {}, os.getpid()
        if path not in self._arrays:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                store = str(self.path)
                self._arrays[path] = _zarr().open_array(store=store, path=path, mode="r")
        return self._arrays[path]

    def _read_map(self, key: str, name: str, shape: tuple[int, int]) -> np.ndarray:
        path, row = self._location(key, name)
        try:
            array = self._array(path)
            data = array[...] if row is None else array[row]
        except Exception as e:  # zarr raises many types for missing/corrupt data
            raise ShardError(
                f"{self.path}: cannot read map {name!r} of key {key!r} from {path!r} ({e}); "
                "re-create this shard"
            ) from e
        return np.asarray(data, dtype=np.float32)

    def _close(self) -> None:
        self._arrays = {}
