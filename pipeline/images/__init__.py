"""Image inputs, decoding and image shards (see DESIGN.md, "The dataset directory")."""

from pipeline.images.decode import (
    Accepted,
    DecodeParams,
    Rejected,
    decode_rgb,
    prepare_image,
)
from pipeline.images.shards import (
    ImageShardReader,
    ImageShardWriter,
    read_image_shard,
    shard_keys,
)
from pipeline.images.sources import Item, list_items, make_key

__all__ = [
    "Accepted",
    "DecodeParams",
    "ImageShardReader",
    "ImageShardWriter",
    "Item",
    "Rejected",
    "decode_rgb",
    "list_items",
    "make_key",
    "prepare_image",
    "read_image_shard",
    "shard_keys",
]
