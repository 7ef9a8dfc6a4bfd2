"""Synthetic data shared by the benchmarks: SA-1B-sized photos and depth-like label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.dataset.prepare import PrepareSettings, prepare


def smooth_map(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A depth-like float32 map `[h, w]` (teacher outputs compress like this, not like noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return 1 + x / w + 0.5 * y / h + 0.1 * np.sin(x / (23 + seed)) * np.cos(y / 31)


def synthetic_photos(folder: Path, n: int, size: tuple[int, int]) -> None:
    """`n` smooth RGB JPEGs of `size` (H, W): cheap stand-ins for SA-1B photos."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        rgb = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin((x + 40 * i) / 97 + y / 131)], -1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"img{i:04d}.jpg", quality=90)


def synthetic_dataset(root: Path, n: int, size: tuple[int, int], shards: int = 4) -> Path:
    """`root/photos` of `n` synthetic photos prepared into `root/ds` (about `shards` shards)."""
    synthetic_photos(root / "photos", n, size)
    dataset = root / "ds"
    settings = PrepareSettings(shard_size=max(1, -(-n // shards)))
    prepare([str(root / "photos")], dataset, settings, progress=False)
    return dataset
