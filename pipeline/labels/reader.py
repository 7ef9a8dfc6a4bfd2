"""The reader half of the label-store interface: `ShardReader`, the base of every backend's reader.

A reader checks the shard's metadata (format, version, crop plan), looks keys up and decodes one
map at a time, checking each against the shape and NaN count its record holds. Open one with
`pipeline.labels.store.open_reader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.labels.codecs import codec_from_description
from pipeline.labels.record import sorted_map_names
from pipeline.labels.writer import FORMAT, FORMAT_VERSION
from pipeline.toolkit.tario import ShardError


class PlanMismatchError(ValueError):
    """The shard's labels were made for a different crop plan than the caller's dataset."""


class ShardReader:
    """Base reader: metadata checks, key lookup, per-map integrity checks against the record.

    Backends implement `_load_meta() -> dict`, `_load_record(key) -> dict`,
    `_read_map(key, name, shape) -> float32 array` and `_close()`.
    """

    name = ""
    suffix = ""

    def __init__(self, path: Path, *, expected_plan_sha256: str | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix != self.suffix:
            raise ValueError(f"{self.path}: a {self.name} label shard ends in {self.suffix!r}")
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: label shard not found")
        meta = self._load_meta()
        self._check_meta(meta)
        self.meta = meta
        self.keys: list[str] = list(meta["keys"])
        self._positions = {k: i for i, k in enumerate(self.keys)}
        self.plan_sha256: str = meta["plan_sha256"]
        self._codec = codec_from_description(meta["codec"], str(self.path))
        self.codec: dict[str, Any] = {"name": self._codec.name, "params": self._codec.params}
        self.extra_meta: dict = meta.get("extra") or {}
        self._records: dict[str, dict] = {}
        if expected_plan_sha256 is not None and expected_plan_sha256 != self.plan_sha256:
            raise PlanMismatchError(
                f"{self.path}: these labels were made for a different crop plan (shard plan "
                f"{self.plan_sha256[:16]}, expected {expected_plan_sha256[:16]}); regenerate "
                "this label column for the current plan or use the dataset it was made for"
            )

    def _check_meta(self, meta: Any) -> None:
        ok = isinstance(meta, dict) and meta.get("format") == FORMAT
        ok = ok and isinstance(meta.get("keys"), list) and isinstance(meta.get("plan_sha256"), str)
        if not ok:
            raise ShardError(f"{self.path}: not a label shard (bad metadata); re-create it")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ShardError(
                f"{self.path}: format version {meta['format_version']} is newer than this "
                f"code supports ({FORMAT_VERSION}); upgrade the pipeline"
            )

    def _position(self, key: str) -> int:
        try:
            return self._positions[key]
        except KeyError:
            raise KeyError(f"{self.path}: no key {key!r} in this shard") from None

    def record(self, key: str) -> dict:
        """The key's record (`record.py`): per-map stats, flags, error, extra fields."""
        self._position(key)
        if key not in self._records:
            self._records[key] = self._load_record(key)
        return self._records[key]

    def names(self, key: str) -> list[str]:
        """Map names stored for `key`, in canonical order (full, r0.sc, r0.t0, ...)."""
        return sorted_map_names(self.record(key)["maps"])

    def read(self, key: str, name: str) -> np.ndarray:
        """Decode one map of one key to float32 (H, W); nothing else is decoded."""
        stats = self.record(key)["maps"].get(name)
        if stats is None:
            raise KeyError(
                f"{self.path}: key {key!r} has no map {name!r}; it has {self.names(key)}"
            )
        shape = tuple(int(s) for s in stats["shape"])
        arr = self._read_map(key, name, shape)
        if arr.shape != shape or int(np.count_nonzero(np.isnan(arr))) != stats["nan"]:
            raise ShardError(
                f"{self.path}: map {name!r} of key {key!r} does not match its record "
                "(missing or corrupt data); re-create this shard"
            )
        return arr

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._positions

    def close(self) -> None:
        self._close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- backend hooks -------------------------------------------------------------------------
    def _load_meta(self) -> dict:
        raise NotImplementedError

    def _load_record(self, key: str) -> dict:
        raise NotImplementedError

    def _read_map(self, key: str, name: str, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def _close(self) -> None:
        pass
