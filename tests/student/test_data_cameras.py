"""The training batch's `focal`: the effective focal length (fx', fy') of the S×S view each sample
trains on, from the dataset's camera record and the plan (after the student's resize), NaN when
the image's camera is unknown. A metric student canonicalises its labels with it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from data_helpers import write_column
from dataset_helpers import read_plan

from pipeline.dataset import load_dataset
from pipeline.dataset.camera import planned_intrinsics
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.world.files import WorldSettings, load_scene, render_world
from pipeline.world.labels import write_world_column
from student.config import DataSettings
from student.data.augment import AugmentSettings
from student.data.stream import DistillStream

TILE, SIZE = 64, 48  # the student resizes the plan's views: its focal length is not the plan's
PLAN = PrepareSettings(tile=TILE, min_region=80, regions=2, shard_size=2)
BATCH_KEYS = {
    "image",
    "image_aug",
    "sc",
    "valid",
    "tiles",
    "tile_boxes",
    "tile_count",
    "region",
    "flip",
    "teacher_index",
    "key",
    "teacher",
    "epoch",
    "step",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A world split, the dataset prepared from it (cameras known) with its exact column, and the
    same PNGs prepared from a plain folder (no camera) with a fake column."""
    root = tmp_path_factory.mktemp("data-cameras")
    world = root / "world"
    render_world(world, 4, WorldSettings(seed=7, height=120, width=180), workers=1, progress=False)
    dataset = prepare([str(world)], root / "ds", PLAN, progress=False, workers=1).out
    write_world_column(dataset, world, "exact", progress=False)
    plain = root / "plain"
    plain.mkdir()
    for png in sorted(world.glob("*.png")):
        shutil.copy(png, plain / png.name)
    bare = prepare([str(plain)], root / "bare", PLAN, progress=False, workers=1).out
    write_column(bare, "fake")
    return dataset, world, bare


def _batches(dataset: Path, teacher: str, mode: str) -> list[dict]:
    augment = AugmentSettings(flip_p=0.5)
    data = DataSettings(mode=mode, size=SIZE, workers=0, augment=augment)
    stream = DistillStream(dataset, [teacher], data, batch_size=2, seed=3)
    return list(stream)


@pytest.mark.parametrize("mode", ["cross_context", "baseline"])
def test_the_batch_carries_each_views_focal_length_after_the_students_resize(world, mode):
    dataset, world_dir, _ = world
    info, plan = load_dataset(dataset), read_plan(dataset)
    batches = _batches(dataset, "exact", mode)
    seen = 0
    for batch in batches:
        assert set(batch) == BATCH_KEYS | {"focal"}
        assert batch["focal"].dtype == torch.float32 and batch["focal"].shape == (2, 2)
        for i, key in enumerate(batch["key"]):
            camera, entry = info.intrinsics(key), plan[key]
            assert camera is not None and camera.source == "world"
            region = int(batch["region"][i])
            if mode == "baseline":
                view = planned_intrinsics(camera, entry, SIZE, (SIZE, SIZE))["full"]
                box = [0, 0, entry["size"][1], entry["size"][0]]
            else:
                view = planned_intrinsics(camera, entry, SIZE)[f"r{region}.sc"]
                box = entry["regions"][region]["box"]
            fx, fy = batch["focal"][i].tolist()
            assert (fx, fy) == pytest.approx((view.fx, view.fy), rel=1e-6)
            # the scene's own focal length scaled by the student's resize of the view's box
            scene = load_scene(world_dir / f"{key}.json").camera
            assert fx == pytest.approx(scene.fx * SIZE / (box[2] - box[0]), rel=1e-6)
            assert fy == pytest.approx(scene.fy * SIZE / (box[3] - box[1]), rel=1e-6)
            seen += 1
    assert seen == 4


def test_without_cameras_the_focal_lengths_are_marked_unknown(world):
    _, _, bare = world
    assert load_dataset(bare).shard_intrinsics(0) == {}
    for mode in ("cross_context", "baseline"):
        for batch in _batches(bare, "fake", mode):
            assert set(batch) == BATCH_KEYS | {"focal"}
            assert batch["focal"].shape == (2, 2)
            assert all(math.isnan(v) for v in batch["focal"].flatten().tolist())
