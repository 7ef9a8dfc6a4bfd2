"""What both stages share: image shards, the crop plan, the label store and the dataset layout."""

__version__ = "0.1.0"
