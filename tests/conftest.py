"""Fixtures shared across the suite: tests never touch the network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def scene_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth synthetic RGB photo (gradients + a disc) of the given size, uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 37 + y / 53)], axis=-1)
    cy, cx, r = (
        rng.uniform(0.3, 0.7) * height,
        rng.uniform(0.3, 0.7) * width,
        min(height, width) / 4,
    )
    base[(y - cy) ** 2 + (x - cx) ** 2 < r**2] *= 0.4
    return (np.clip(base, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Five photos of sizes that exercise the crop plan: tiled regions and degenerate ones."""
    folder = tmp_path / "photos"
    folder.mkdir()
    sizes = [(700, 900), (480, 640), (1200, 800), (650, 650), (300, 420)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(scene_image(h, w, i)).save(folder / f"img{i}.jpg", quality=90)
    return folder
