"""The label store: write and read ONE label-column shard, whatever the backend.

The interface is `writer.ShardWriter` and `reader.ShardReader`; the backends implement their
hooks (`wds.py`: `NNNNNN.tar` plus an offset index, the default; `zarr_backend.py`: a Zarr v3
group `NNNNNN.zarr`). This module is the one place that registers the built-in backends in
`BACKENDS`, and the entry points every caller uses:

    with open_writer(path, keys=keys, plan_sha256=plan) as w:
        for key in keys:
            w.write(key, {"full": full, "r0.sc": sc0, "r0.t0": t00})   # or error="..."
    summary = w.summary

    with open_reader(path, expected_plan_sha256=plan) as r:
        depth = r.read(r.keys[0], "r0.sc")                               # float32 (H, W)

A third-party backend subclasses both bases and registers a `Backend` here:
`BACKENDS.register("name")(Backend("name", MyWriter, MyReader))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.labels.codecs import DEFAULT_CODEC, Codec, get_codec
from pipeline.labels.reader import ShardReader
from pipeline.labels.wds import WdsShardReader, WdsShardWriter
from pipeline.labels.writer import ShardWriter
from pipeline.labels.zarr_backend import ZarrShardReader, ZarrShardWriter
from pipeline.toolkit.registry import Registry

DEFAULT_BACKEND = "wds"


@dataclass(frozen=True)
class Backend:
    """One label backend: its writer and reader classes (which agree on the shard suffix)."""

    name: str
    writer: type[ShardWriter]
    reader: type[ShardReader]

    def __post_init__(self) -> None:
        if self.writer.suffix != self.reader.suffix or not self.writer.suffix:
            raise ValueError(f"label backend {self.name!r}: writer and reader suffixes differ")

    @property
    def suffix(self) -> str:
        """The shard's file (or directory) suffix, e.g. '.tar' or '.zarr'."""
        return self.writer.suffix


BACKENDS: Registry[Backend] = Registry("label backend")
for _backend in (
    Backend("wds", WdsShardWriter, WdsShardReader),
    Backend("zarr", ZarrShardWriter, ZarrShardReader),
):
    BACKENDS.register(_backend.name)(_backend)


def backend_suffix(backend: str) -> str:
    """The shard suffix of a backend by name ('wds' -> '.tar'); unknown names list the valid."""
    return BACKENDS.get(backend).suffix


def backend_for_path(path: Path) -> str:
    """Infer the backend name from a shard's suffix ('.tar' -> wds, '.zarr' -> zarr)."""
    suffix = Path(path).suffix
    known = {BACKENDS.get(n).suffix: n for n in BACKENDS.names()}
    if suffix not in known:
        raise ValueError(
            f"{path}: cannot tell the label backend from suffix {suffix!r}; known: {known}"
        )
    return known[suffix]


def open_writer(
    path: Path,
    *,
    backend: str = DEFAULT_BACKEND,
    codec: str | Codec = DEFAULT_CODEC,
    keys: list[str],
    plan_sha256: str,
    extra_meta: dict | None = None,
    **options: Any,
) -> ShardWriter:
    """Start writing one label shard at `path` (suffix must match the backend)."""
    codec_obj = get_codec(codec) if isinstance(codec, str) else codec
    cls = BACKENDS.get(backend).writer
    return cls(
        path, codec=codec_obj, keys=keys, plan_sha256=plan_sha256, extra_meta=extra_meta, **options
    )


def open_reader(
    path: Path,
    *,
    backend: str | None = None,
    expected_plan_sha256: str | None = None,
    **options: Any,
) -> ShardReader:
    """Open a published label shard; the backend is inferred from the suffix when not given."""
    cls = BACKENDS.get(backend or backend_for_path(Path(path))).reader
    return cls(Path(path), expected_plan_sha256=expected_plan_sha256, **options)
