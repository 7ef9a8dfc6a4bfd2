"""The label store: per-teacher label columns of compressed depth maps.

- `column`: one label column `labels/<name>/` of a dataset (`LabelColumn`): its manifest and
  identity, the path of shard i, the one rule "shard i is usable", recording finished shards.
- `manifest`: `labels/<column>/manifest.json` (provenance + per-shard status).
- `store`: open one shard whatever its backend (`open_writer`, `open_reader`, `BACKENDS`).
- `writer`, `reader`: the interface every backend implements (`ShardWriter`, `ShardReader`).
- `wds`, `zarr_backend`: the two backends (tar + offset index; Zarr v3 group).
- `codecs`: map <-> bytes codecs (`CODECS`, default `pcodec-f16`).
- `record`: per-key records (map statistics, flags) and key / map-name rules.
- `quality`: flag counts over a column's shards and the rule "too many unusable maps".

The package imports none of its modules: import the one you need.
"""
