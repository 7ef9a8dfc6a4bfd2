"""Where everything lives inside a dataset directory (see DESIGN.md, "The dataset directory")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
COLUMN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")


def shard_name(index: int) -> str:
    return f"{index:06d}"


def check_column_name(name: str) -> str:
    """Column (teacher) names are lower case, no dots, usable as a directory name."""
    if not COLUMN_NAME.match(name):
        raise ValueError(
            f"column name {name!r} is invalid: use lower-case letters, digits, '_' and '-', "
            "starting with a letter or digit (e.g. 'dav2-large')"
        )
    return name


def check_key(key: str) -> str:
    """Sample keys (shared by image shards, plans and label shards): 1-80 characters from
    `[A-Za-z0-9_-]`, starting with a letter or digit."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(
            f"key {key!r} is invalid for a label shard: use 1-80 characters from [A-Za-z0-9_-], "
            "starting with a letter or digit"
        )
    return key


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset directory. Pure path arithmetic: nothing is read or created."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def dataset_json(self) -> Path:
        return self.root / "dataset.json"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def plan_dir(self) -> Path:
        return self.root / "plan"

    @property
    def labels_dir(self) -> Path:
        return self.root / "labels"

    def image_shard(self, index: int) -> Path:
        return self.images_dir / f"{shard_name(index)}.tar"

    def plan_shard(self, index: int) -> Path:
        return self.plan_dir / f"{shard_name(index)}.json"

    @property
    def camera_dir(self) -> Path:
        return self.root / "camera"

    def camera_shard(self, index: int) -> Path:
        """Intrinsics of the images of shard `index` that have them (`pipeline.dataset.camera`)."""
        return self.camera_dir / f"{shard_name(index)}.json"

    def column_dir(self, column: str) -> Path:
        return self.labels_dir / check_column_name(column)

    def manifest(self, column: str) -> Path:
        return self.column_dir(column) / "manifest.json"

    def label_shard(self, column: str, index: int, suffix: str) -> Path:
        """`suffix` is the backend's file suffix, e.g. '.tar' or '.zarr'."""
        return self.column_dir(column) / f"{shard_name(index)}{suffix}"

    def columns(self) -> list[str]:
        """Names of the label columns that have a manifest, sorted."""
        if not self.labels_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.labels_dir.glob("*/manifest.json"))
