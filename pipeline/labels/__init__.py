"""The label store: per-teacher label columns of compressed depth maps.

- `codecs`: map <-> bytes codecs (`CODECS`, default `pcodec-f16`).
- `record`: per-key records (map statistics, flags) and key / map-name rules.
- `store`: the backend-independent interface (`open_writer`, `open_reader`, `BACKENDS`).
- `wds`, `zarr_backend`: the two backends (tar + offset index; Zarr v3 group).
- `manifest`: `labels/<column>/manifest.json` (provenance + per-shard status).
"""

from pipeline.labels import wds, zarr_backend  # noqa: F401  (register the backends)
from pipeline.labels.codecs import CODECS, DEFAULT_CODEC, Codec, get_codec
from pipeline.labels.manifest import (
    ColumnManifest,
    ShardSummary,
    create_or_check,
    record_shard,
    shard_checksum,
    shard_entry,
    shard_nbytes,
)
from pipeline.labels.record import check_key, check_map_name, map_stats
from pipeline.labels.store import (
    BACKENDS,
    DEFAULT_BACKEND,
    PlanMismatchError,
    ShardReader,
    ShardWriter,
    open_reader,
    open_writer,
)

__all__ = [
    "BACKENDS",
    "CODECS",
    "DEFAULT_BACKEND",
    "DEFAULT_CODEC",
    "Codec",
    "ColumnManifest",
    "PlanMismatchError",
    "ShardReader",
    "ShardSummary",
    "ShardWriter",
    "check_key",
    "check_map_name",
    "create_or_check",
    "get_codec",
    "map_stats",
    "open_reader",
    "open_writer",
    "record_shard",
    "shard_checksum",
    "shard_entry",
    "shard_nbytes",
]
