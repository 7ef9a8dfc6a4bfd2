"""The writer half of the label-store interface: `ShardWriter`, the base of every backend's writer.

A shard holds one teacher's labels for the keys of one image shard, in the image shard's order.
Per key: up to one map per name (`full`, `r{k}.sc`, `r{k}.t{j}`; 2-D float arrays) and a record
(`record.py`). Keys and map names are validated as `pipeline.dataset.layout.check_key` and
`record.check_map_name` describe, and keys must be written exactly in the declared order.

A writer publishes atomically on `close()`: until then the shard is a hidden temporary sibling,
so readers never see a partial shard, and an exception (or a killed process) leaves nothing
visible. Open one with `pipeline.labels.store.open_writer`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.labels.codecs import Codec
from pipeline.labels.manifest import ShardSummary, shard_checksum, shard_nbytes
from pipeline.labels.record import (
    as_map,
    build_record,
    check_keys,
    check_map_name,
    map_flags,
    map_stats,
    map_unusable,
    sorted_map_names,
)
from pipeline.toolkit.atomic import publishing

FORMAT = "depth-labels"
"""`format` of every label shard's metadata (the reader refuses anything else)."""
FORMAT_VERSION = 1
"""Version of the shard format this code writes; readers refuse newer ones."""


@dataclass(frozen=True)
class PreparedKey:
    """One key ready to write: its record and each map's encoded payload."""

    key: str
    record: dict
    payloads: dict[str, Any]
    pixels: int


class ShardWriter:
    """Base writer: key order, validation, records, summary, atomic publish.

    Backends implement `_begin(tmp)`, `_check_maps(key, arrays)` (optional),
    `_put_map(key, name, arr)`, `_put_record(key, record)`, `_finish() -> sha256 | None` (the
    checksum when it was computed while writing) and `_discard()`.
    """

    name = ""
    suffix = ""

    def __init__(
        self,
        path: Path,
        *,
        codec: Codec,
        keys: list[str],
        plan_sha256: str,
        extra_meta: dict | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix != self.suffix:
            raise ValueError(f"{self.path}: a {self.name} label shard must end in {self.suffix!r}")
        if not isinstance(plan_sha256, str) or not plan_sha256.strip():
            raise ValueError(f"{self.path}: plan_sha256 must be a non-empty string")
        self.codec = codec
        self.keys = check_keys(list(keys))
        self.plan_sha256 = plan_sha256
        self.meta = self._make_meta(dict(extra_meta or {}))
        self.summary = ShardSummary(self.path)
        self._flags: Counter[str] = Counter()  # keys per flag
        self._map_flags: Counter[str] = Counter()  # maps per flag
        self._next = 0
        self._state = "open"
        self._publisher = publishing(self.path)
        self.tmp = self._publisher.__enter__()
        try:
            self._begin(self.tmp)
        except BaseException as e:
            self._abort(e)
            raise

    def _make_meta(self, extra_meta: dict) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backend": self.name,
            "codec": self.codec.describe(),
            "plan_sha256": self.plan_sha256,
            "keys": self.keys,
            "extra": extra_meta,
        }

    def prepare(
        self,
        key: str,
        maps: dict[str, np.ndarray] | None = None,
        record_extra: dict | None = None,
        error: str | None = None,
    ) -> PreparedKey:
        """Validate, compute the record and encode one key's maps, without writing anything.

        Thread-safe and independent of key order: a caller may prepare keys in a thread pool
        (encoding is the expensive part) and hand the results to `write_prepared` in order.
        """
        maps = dict(maps or {})
        if not maps and error is None:
            raise ValueError(f"{self.path}: key {key!r} has no maps and no error; pass error=...")
        if error is not None and (not isinstance(error, str) or not error):
            raise ValueError(f"{self.path}: key {key!r}: error must be a non-empty string")
        names = sorted_map_names(check_map_name(n) for n in maps)
        arrays = {n: as_map(key, n, maps[n]) for n in names}
        stats = {n: map_stats(a, self.codec.storage_dtype) for n, a in arrays.items()}
        record = build_record(stats, error=error, extra=record_extra)
        try:
            json.dumps(record, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{self.path}: key {key!r}: record_extra is not plain JSON ({e})"
            ) from e
        self._check_maps(key, arrays)
        payloads = {n: self._encode_map(a) for n, a in arrays.items()}
        return PreparedKey(key, record, payloads, sum(a.size for a in arrays.values()))

    def write_prepared(self, prepared: PreparedKey) -> dict:
        """Write a prepared key; keys must arrive in shard order. Returns its record."""
        key = prepared.key
        self._check_next(key)
        try:
            for n, payload in prepared.payloads.items():
                self._put_map(key, n, payload)
            self._put_record(key, prepared.record)
        except BaseException as e:  # a half-written key cannot be undone: give up the shard
            self._abort(e)
            raise
        self._account(key, prepared.record, prepared.pixels)
        self._next += 1
        return prepared.record

    def write(
        self,
        key: str,
        maps: dict[str, np.ndarray] | None = None,
        record_extra: dict | None = None,
        error: str | None = None,
    ) -> dict:
        """Write the next key's maps (name -> (H, W) float array) and its record; returns it."""
        self._check_next(key)
        return self.write_prepared(self.prepare(key, maps, record_extra, error))

    def _check_next(self, key: str) -> None:
        if self._state != "open":
            raise ValueError(f"{self.path}: writer is {self._state}; open a new writer")
        if self._next >= len(self.keys):
            raise ValueError(f"{self.path}: all {len(self.keys)} keys are written; got {key!r}")
        expected = self.keys[self._next]
        if key != expected:
            raise ValueError(
                f"{self.path}: keys must be written in shard order; expected {expected!r} "
                f"(position {self._next}), got {key!r}"
            )

    def _account(self, key: str, record: dict, pixels: int) -> None:
        self.summary.count += 1
        self.summary.pixels += pixels
        if record["error"] is not None:
            self.summary.failures.append({"key": key, "error": record["error"]})
        self._flags.update(record["flags"])
        self.summary.flags = dict(sorted(self._flags.items()))
        for stats in record["maps"].values():
            self._map_flags.update(map_flags(stats))
            self.summary.maps += 1
            self.summary.unusable_maps += map_unusable(stats)
        self.summary.map_flags = dict(sorted(self._map_flags.items()))

    def close(self) -> ShardSummary:
        """Publish the shard (all keys must be written); returns the summary."""
        if self._state == "closed":
            return self.summary
        if self._state != "open":
            raise ValueError(f"{self.path}: writer is {self._state}; nothing to publish")
        if self._next != len(self.keys):
            missing = self.keys[self._next :]
            err = ValueError(
                f"{self.path}: {len(missing)} of {len(self.keys)} keys were never written "
                f"(first: {missing[0]!r}); the shard was not published"
            )
            self._abort(err)
            raise err
        try:
            sha = self._finish()
            self._publisher.__exit__(None, None, None)
        except BaseException as e:
            self._abort(e)
            raise
        self._state = "closed"
        self.summary.sha256 = sha or shard_checksum(self.path)
        self.summary.bytes = shard_nbytes(self.path)
        return self.summary

    def abort(self) -> None:
        """Drop everything written so far; nothing becomes visible."""
        if self._state == "open":
            self._abort(RuntimeError(f"{self.path}: writing aborted"))

    def _abort(self, exc: BaseException) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        try:
            self._discard()
        finally:
            self._publisher.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self._abort(exc)
        else:
            self.close()

    # -- backend hooks -------------------------------------------------------------------------
    def _begin(self, tmp: Path) -> None:
        raise NotImplementedError

    def _check_maps(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Reject maps the backend cannot store, before anything of the key is written."""

    def _encode_map(self, arr: np.ndarray) -> Any:
        """Turn a validated float32 map into what `_put_map` stores (thread-safe, pure)."""
        raise NotImplementedError

    def _put_map(self, key: str, name: str, payload: Any) -> None:
        raise NotImplementedError

    def _put_record(self, key: str, record: dict) -> None:
        raise NotImplementedError

    def _finish(self) -> str | None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError
