"""Fixtures of the student tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_helpers import prepare_small, write_fake_column, write_photos

from labelgen.teachers import write_tiny_checkpoint


@pytest.fixture(scope="session")
def train_setup(tmp_path_factory) -> tuple[Path, Path]:
    """A 5-image dataset with two fake teacher columns, and a tiny Depth Anything init."""
    root = tmp_path_factory.mktemp("train")
    dataset = prepare_small(write_photos(root / "photos"), root / "ds", shard_size=2)
    write_fake_column(dataset, "alpha")
    write_fake_column(dataset, "beta", backend="zarr")
    return dataset, write_tiny_checkpoint("depth-anything-v2", root / "init")
