"""What both stages share.

- `dataset/`: the dataset directory (layout, `dataset.json`, crop plan; prepare, status, verify);
- `images/`: image inputs, decoding, image shards; `labels/`: label columns and their store;
- `model/`: the Depth Anything V2 architecture every stage builds;
- `toolkit/`: general tools (atomic files, hashing, tar I/O, registries, settings, ranks);
- `cli.py`, `demo.py`, `bench/`: the top floor, the `pipeline` command, its demo and benchmarks.
"""

__version__ = "0.1.0"
