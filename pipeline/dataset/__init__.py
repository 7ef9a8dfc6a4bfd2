"""The dataset directory (DESIGN.md): its layout, `dataset.json`, the crop plan, and the
`prepare`, `status` and `verify` commands over it. Image shards and label columns have packages
of their own (`pipeline.images`, `pipeline.labels`)."""

from pipeline.dataset.info import DatasetInfo, ShardInfo, load_dataset

__all__ = ["DatasetInfo", "ShardInfo", "load_dataset"]
