"""Reading a prepared dataset directory: `dataset.json` and its shard list."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline.dataset.camera import Intrinsics, load_camera_shard
from pipeline.dataset.layout import SCHEMA_VERSION, DatasetLayout
from pipeline.dataset.plan import PlanParams
from pipeline.toolkit.atomic import read_json


@dataclass(frozen=True)
class ShardInfo:
    index: int
    name: str
    count: int
    image_sha256: str
    plan_sha256: str
    camera_sha256: str = ""
    """'' when no image of the shard has intrinsics (no camera shard)."""


@dataclass(frozen=True)
class DatasetInfo:
    """The parsed `dataset.json` of one dataset directory."""

    layout: DatasetLayout
    raw: dict[str, Any]
    shards: list[ShardInfo]

    @property
    def plan_hash(self) -> str:
        return self.raw["plan_hash"]

    @property
    def plan_params(self) -> PlanParams:
        """The crop plan's parameters (tile size, regions, ...), as `pipeline prepare` recorded."""
        return PlanParams(**self.raw["plan_params"])

    @property
    def num_samples(self) -> int:
        return int(self.raw["num_samples"])

    @property
    def rejected(self) -> list[dict[str, str]]:
        return list(self.raw.get("rejected", []))

    def shard_intrinsics(self, index: int) -> dict[str, Intrinsics]:
        """`{key: source intrinsics}` of the images of shard `index` that have them."""
        if not self.shards[index].camera_sha256:
            return {}
        path = self.layout.camera_shard(index)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: missing, but {self.layout.dataset_json} lists it; re-run the `pipeline "
                "prepare` that made the dataset (`pipeline verify` prints it)"
            )
        return load_camera_shard(path)

    @cached_property
    def _intrinsics(self) -> dict[str, Intrinsics]:
        out: dict[str, Intrinsics] = {}
        for shard in self.shards:
            out.update(self.shard_intrinsics(shard.index))
        return out

    def intrinsics(self, key: str) -> Intrinsics | None:
        """The source intrinsics of image `key` (None: unknown); the views' own come from
        `pipeline.dataset.camera.planned_intrinsics`. Reads every camera shard once."""
        return self._intrinsics.get(key)


def load_dataset(root: Path | str) -> DatasetInfo:
    """Load `root/dataset.json`; a missing or foreign file gets a message that says what to run."""
    layout = DatasetLayout(Path(root))
    path = layout.dataset_json
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {layout.root} is not a prepared dataset; "
            f"run `pipeline prepare --images PATH --out {layout.root}` first"
        )
    raw = read_json(path)
    if raw.get("schema") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema {raw.get('schema')!r} is not {SCHEMA_VERSION}; "
            "prepare the dataset again with this version of the pipeline"
        )
    shards = [
        ShardInfo(
            i,
            s["name"],
            int(s["count"]),
            s["image_sha256"],
            s["plan_sha256"],
            s.get("camera_sha256", ""),
        )
        for i, s in enumerate(raw["shards"])
    ]
    return DatasetInfo(layout, raw, shards)


def as_dataset(dataset: DatasetInfo | Path | str) -> DatasetInfo:
    """A `DatasetInfo` from itself or from a dataset directory (`load_dataset`)."""
    return dataset if isinstance(dataset, DatasetInfo) else load_dataset(dataset)
