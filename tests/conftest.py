"""Fixtures shared across the suite: tests never touch the network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from dataset_helpers import (  # noqa: E402
    LAUNCHER_VARIABLES,
    scene_image,  # noqa: F401 (re-exported)
    write_photos,
)


@pytest.fixture
def no_launcher_env(monkeypatch):
    """A launcher's RANK/WORLD_SIZE/SLURM variables must not leak into a test."""
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Five photos of sizes that exercise the crop plan: tiled regions and degenerate ones."""
    return write_photos(tmp_path / "photos")
