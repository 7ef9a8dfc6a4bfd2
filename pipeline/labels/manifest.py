"""The column manifest `labels/<column>/manifest.json`: teacher provenance + per-shard status.

    {"schema_version": 1, "column": "dav2-large", "teacher": "depth-anything-v2",
     "adapter": "depth-anything-v2", "weights": {"source": "<hub id or path>", "sha256": "..."},
     "output_kind": "disparity", "invariance": "affine", "input_rule": {...},
     "precision": "bf16", "codec": {"name": "pcodec-f16", "params": {"level": 8}},
     "backend": "wds", "plan_sha256": "...", "code_version": "0.1.0", "extra": {},
     "shards": {"000000": {"status": "done", "count": 1000, "failures": [{"key", "error"}],
                           "sha256": "...", "bytes": 123, "pixels": 456, "flags": {"nan": 2},
                           "maps": 6400, "map_flags": {"nan": 9}, "unusable_maps": 0}}}

Flag counts: `flags` counts the keys (images) carrying each flag (a key carries the flags of any of
its maps, plus `error`); `map_flags` counts the maps carrying each flag, out of `maps` maps;
`unusable_maps` counts the maps that teach nothing (`record.map_unusable`). Entries written before
the map counts were recorded lack the last three (readers treat them as unknown).

No timestamps or host names are recorded: two runs that produce the same shards produce the same
manifest bytes, whatever the order in which ranks finished (timing goes to the job's log).

Several processes (ranks) publish shards into one manifest: `record_shard` and `create_or_check`
do their read-modify-write under an exclusive `fcntl.flock` on `<column>/.manifest.lock`, and
the file itself is replaced atomically, so readers never see a partial manifest and no update is
lost. (flock needs a file system that supports it; local disks, Lustre and NFSv4 do.)
Also here: `ShardSummary` (what a label writer reports) and shard checksums.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pipeline
from pipeline.labels.identity import ColumnIdentity, manifest_key
from pipeline.toolkit.atomic import read_json, write_json
from pipeline.toolkit.hashing import update_from_file

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".manifest.lock"
OUTPUT_KINDS = ("disparity", "depth", "metric_depth")
INVARIANCES = ("affine", "metric")
SHARD_STATUSES = ("done", "failed")
SHARD_NAME_RE = re.compile(r"^[0-9]{6,}$")


@dataclass
class ShardSummary:
    """What a finished shard holds; `manifest_entry()` is what the column manifest records."""

    path: Path
    count: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    pixels: int = 0
    flags: dict[str, int] = field(default_factory=dict)  # number of keys carrying each flag
    sha256: str | None = None
    bytes: int | None = None
    maps: int = 0  # maps written
    map_flags: dict[str, int] = field(default_factory=dict)  # number of maps carrying each flag
    unusable_maps: int = 0  # maps that teach nothing (`record.map_unusable`)

    def manifest_entry(self) -> dict[str, Any]:
        return shard_entry(
            "done",
            count=self.count,
            failures=self.failures,
            sha256=self.sha256,
            nbytes=self.bytes,
            pixels=self.pixels,
            flags=self.flags,
            maps=self.maps,
            map_flags=self.map_flags,
            unusable_maps=self.unusable_maps,
        )


def shard_entry(
    status: str,
    *,
    count: int = 0,
    failures: list[dict[str, str]] | None = None,
    sha256: str | None = None,
    nbytes: int | None = None,
    pixels: int = 0,
    flags: dict[str, int] | None = None,
    maps: int = 0,
    map_flags: dict[str, int] | None = None,
    unusable_maps: int = 0,
    error: str | None = None,
) -> dict[str, Any]:
    """One `shards` entry; `error` is the reason a whole shard failed (status 'failed')."""
    entry = {
        "status": status,
        "count": count,
        "failures": list(failures or []),
        "sha256": sha256,
        "bytes": nbytes,
        "pixels": pixels,
        "flags": dict(flags or {}),
        "maps": maps,
        "map_flags": dict(map_flags or {}),
        "unusable_maps": unusable_maps,
    }
    if error is not None:
        entry["error"] = error
    check_shard_entry(entry, "shard entry")
    return entry


def invariance_of(output_kind: str) -> str:
    """`metric` for metric depth, `affine` for relative disparity/depth."""
    return "metric" if output_kind == "metric_depth" else "affine"


def made_from_other_images(entry: dict[str, Any], image_sha256: str) -> bool:
    """Whether a shard entry records that it was labelled from another image shard than the one
    with `image_sha256` (entries written before this was recorded count as the same)."""
    made_from = entry.get("image_sha256")
    return made_from is not None and made_from != image_sha256


def check_shard_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, dict) or entry.get("status") not in SHARD_STATUSES:
        raise ValueError(f"{where}: status must be one of {SHARD_STATUSES}, got {entry!r}")
    if entry["status"] == "done" and not isinstance(entry.get("sha256"), str):
        raise ValueError(f"{where}: a 'done' shard needs its sha256 checksum")
    failures = entry.get("failures", [])
    if not all(isinstance(f, dict) and {"key", "error"} <= set(f) for f in failures):
        raise ValueError(f"{where}: failures must be a list of {{'key', 'error'}} dicts")


@dataclass
class ColumnManifest:
    """Provenance of one label column and the status of each of its shards."""

    column: str
    """Column (directory) name under `labels/`, e.g. 'dav2-large'."""
    teacher: str
    """Teacher registry name, e.g. 'depth-anything-v2'."""
    adapter: str
    """Adapter class or name that ran the teacher."""
    weights: dict[str, Any]
    """`{"source": hub id or path, "sha256": content hash of the weights}`."""
    output_kind: str
    """'disparity', 'depth' or 'metric_depth'."""
    invariance: str
    """'affine' or 'metric'."""
    input_rule: Any
    """How the teacher's input was sized (e.g. {"short_side": 518, "multiple_of": 14})."""
    precision: str
    """Inference precision, e.g. 'bf16', 'fp16', 'fp32'."""
    codec: dict[str, Any]
    """`{"name", "params"}` of the label codec (`codecs.Codec.describe()`)."""
    backend: str
    """Label backend: 'wds' or 'zarr'."""
    plan_sha256: str
    """Hash of the crop plan the labels were made for."""
    code_version: str = pipeline.__version__
    """`pipeline.__version__` of the code that created the column."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth recording (git sha, batch size, ...)."""
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`{"000000": shard_entry(...)}`."""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        where = f"manifest of label column {self.column!r}"
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"{where}: output_kind must be one of {OUTPUT_KINDS}")
        if self.invariance not in INVARIANCES:
            raise ValueError(f"{where}: invariance must be one of {INVARIANCES}")
        if not isinstance(self.weights, dict) or not {"source", "sha256"} <= set(self.weights):
            raise ValueError(f"{where}: weights must be {{'source': ..., 'sha256': ...}}")
        if not isinstance(self.codec, dict) or "name" not in self.codec:
            raise ValueError(f"{where}: codec must be {{'name': ..., 'params': {{...}}}}")
        for name, entry in self.shards.items():
            check_shard_entry(entry, f"{where}, shard {name}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> ColumnManifest:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown fields {unknown}; upgrade the pipeline")
        if data.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
            raise ValueError(f"{where}: schema is newer than this code; upgrade the pipeline")
        try:
            return cls(**data)
        except TypeError as e:
            raise ValueError(f"{where}: incomplete manifest ({e})") from e
        except ValueError as e:  # a bad field: name the file it came from
            raise ValueError(f"{where}: {e}") from e

    @classmethod
    def load(cls, path: Path) -> ColumnManifest:
        return cls.from_dict(read_json(Path(path)), str(path))

    @classmethod
    def load_or_none(cls, path: Path) -> ColumnManifest | None:
        return cls.load(path) if Path(path).exists() else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        """Replace `path` atomically (temporary file, fsync, rename)."""
        write_json(Path(path), self.to_dict())

    def is_done(self, shard_name: str) -> bool:
        return self.shards.get(shard_name, {}).get("status") == "done"

    def identity(self) -> ColumnIdentity:
        """The header's `ColumnIdentity`, which must agree for runs sharing the column."""
        return ColumnIdentity.of_header(self)


@contextlib.contextmanager
def manifest_lock(column_dir: Path) -> Iterator[None]:
    """Exclusive inter-process lock on `column_dir/.manifest.lock` (blocks until acquired)."""
    column_dir = Path(column_dir)
    column_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(column_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def manifest_path(column_dir: Path) -> Path:
    return Path(column_dir) / MANIFEST_NAME


def create_or_check(column_dir: Path, provenance: ColumnManifest | dict) -> ColumnManifest:
    """Write the manifest header the first time; later, check it matches and return it.

    Raises `ValueError` naming the column when an existing manifest differs in a field of its
    identity (`identity.ColumnIdentity`: other weights, another crop plan, output kind, codec,
    backend, precision, teacher options or input resampling).
    """
    new = _as_manifest(column_dir, provenance)
    path = manifest_path(column_dir)
    with manifest_lock(column_dir):
        old = ColumnManifest.load_or_none(path)
        if old is None:
            new.save(path)
            return new
    old_id, new_id = old.identity(), new.identity()
    diff = old_id.differences(new_id)
    if diff:
        keys = [manifest_key(name) for name in diff]
        details = "; ".join(
            f"{key}: {getattr(old_id, name)!r} there, {getattr(new_id, name)!r} now"
            for key, name in zip(keys, diff, strict=True)
        )
        raise ValueError(
            f"label column {old.column!r} ({path}) was made with different {', '.join(keys)} "
            f"({details}); choose a new column name, or pass --overwrite to replace the column"
        )
    return old


def _as_manifest(column_dir: Path, provenance: ColumnManifest | dict) -> ColumnManifest:
    if isinstance(provenance, ColumnManifest):
        return dataclasses.replace(provenance, shards={})
    data = {"column": Path(column_dir).name, **provenance, "shards": {}}
    return ColumnManifest.from_dict(data, f"provenance of column {Path(column_dir).name!r}")


def record_shard(column_dir: Path, shard_name: str, entry: dict[str, Any]) -> ColumnManifest:
    """Set `shards[shard_name] = entry` under the manifest lock; returns the updated manifest."""
    if not SHARD_NAME_RE.match(shard_name):
        raise ValueError(f"shard name {shard_name!r} is invalid; expected e.g. '000042'")
    check_shard_entry(entry, f"{column_dir}, shard {shard_name}")
    path = manifest_path(column_dir)
    with manifest_lock(column_dir):
        manifest = ColumnManifest.load_or_none(path)
        if manifest is None:
            raise ValueError(f"{path} does not exist; call create_or_check(...) before recording")
        manifest.shards[shard_name] = entry
        manifest.save(path)
    return manifest


def shard_checksum(path: Path) -> str:
    """sha256 hex of a tar shard; for a directory shard, over sorted (relative path, bytes).

    Directory digest: for every file in sorted POSIX relative-path order, the path as UTF-8, a
    NUL byte, the size as 8 little-endian bytes, then the content.
    """
    path = Path(path)
    h = hashlib.sha256()
    if not path.is_dir():
        update_from_file(h, path)
        return h.hexdigest()
    for rel, full in _tree_files(path):
        h.update(rel.encode() + b"\0" + full.stat().st_size.to_bytes(8, "little"))
        update_from_file(h, full)
    return h.hexdigest()


def _tree_files(root: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            out.append((full.relative_to(root).as_posix(), full))
    return sorted(out)


def shard_nbytes(path: Path) -> int:
    """Bytes on disk of a shard (file size, or the sum over a directory's files)."""
    path = Path(path)
    if not path.is_dir():
        return path.stat().st_size
    return sum(full.stat().st_size for _rel, full in _tree_files(path))
