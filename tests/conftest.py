"""Fixtures shared across the suite: tests never touch the network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from dataset_helpers import scene_image, write_photos  # noqa: E402, F401 (re-exported)


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Five photos of sizes that exercise the crop plan: tiled regions and degenerate ones."""
    return write_photos(tmp_path / "photos")
