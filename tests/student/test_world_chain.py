"""View geometry end to end, which random teachers cannot check: the world's exact column through
`pipeline prepare`, the label store and the student's loader. Every label the loader hands out
(after region choice, flip and resize) must equal the exact depth of the student's own input
view, rendered again from the scene: for regions, tiles and the full image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.world.files import WorldSettings, load_scene, render_world
from pipeline.world.labels import write_world_column
from pipeline.world.render import render
from student.config import DataSettings
from student.data.augment import AugmentSettings
from student.data.stream import DistillStream

TILE = 64
PLAN = PrepareSettings(tile=TILE, min_region=96, regions=2, shard_size=2)


@pytest.fixture(scope="module")
def world_dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world-chain")
    world = root / "world"
    render_world(world, 4, WorldSettings(seed=3, height=150, width=225), workers=1, progress=False)
    dataset = prepare([str(world)], root / "ds", PLAN).out
    write_world_column(dataset, world, "exact", progress=False)
    return dataset, world


def _disparity(depth: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.maximum(depth, 1e-6), 0.0)


def _rendered(world: Path, key: str, box, size: int, flip: bool) -> np.ndarray:
    """Disparity of the view `box` of image `key` at size x size, mirrored with `flip`."""
    view = render(load_scene(world / f"{key}.json"), size, size, tuple(box), rgb=False)
    disp = np.where(view.valid, 1.0 / np.maximum(view.depth, 1e-6), 0.0)
    return disp[:, ::-1] if flip else disp


def _samples(dataset: Path, mode: str, size: int):
    data = DataSettings(mode=mode, size=size, workers=0, augment=AugmentSettings(flip_p=0.5))
    stream = DistillStream(dataset, ["exact"], data, batch_size=2, seed=1)
    for batch in stream:
        for i, key in enumerate(batch["key"]):
            yield batch, i, key


def _plan_entry(dataset: Path, key: str) -> dict:
    from pipeline.dataset import load_dataset
    from pipeline.dataset.plan import load_plan_shard

    info = load_dataset(dataset)
    for shard in info.shards:
        plan = load_plan_shard(info.layout.plan_shard(shard.index))
        if key in plan:
            return plan[key]
    raise KeyError(key)


def test_region_and_tile_labels_are_the_exact_depth_of_the_student_view(world_dataset):
    """With the student's input side equal to the tile side nothing is resampled: the labels
    equal the rendered views to float16 precision, flipped exactly when the image is."""
    dataset, world = world_dataset
    flips, seen = set(), 0
    for batch, i, key in _samples(dataset, "cross_context", TILE):
        entry = _plan_entry(dataset, key)
        region = entry["regions"][int(batch["region"][i])]
        flip = bool(batch["flip"][i])
        flips.add(flip)
        want = _rendered(world, key, region["box"], TILE, flip)
        np.testing.assert_allclose(batch["sc"][i, 0].numpy(), want, rtol=2e-3, atol=1e-6)
        for j, tile in enumerate(region["tiles"]):
            got = batch["tiles"][i, j].numpy()
            np.testing.assert_allclose(got, _rendered(world, key, tile, TILE, flip), rtol=2e-3)
        seen += 1
    assert seen == 4 and flips == {False, True}


def test_the_check_fails_on_a_wrong_geometry(world_dataset):
    """The comparison above would catch a region off by a few pixels or a missing flip."""
    dataset, world = world_dataset
    batch, i, key = next(_samples(dataset, "cross_context", TILE))
    box = _plan_entry(dataset, key)["regions"][int(batch["region"][i])]["box"]
    flip = bool(batch["flip"][i])
    got = batch["sc"][i, 0].numpy()
    shifted = [box[0] + 6, box[1], box[2] + 6, box[3]]
    for wrong in (
        _rendered(world, key, shifted, TILE, flip),
        _rendered(world, key, box, TILE, not flip),
    ):
        assert np.median(np.abs(got - wrong) / np.maximum(wrong, 1e-6)) > 1e-3


def _smooth(disp: np.ndarray, tolerance: float = 0.05) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood varies by at most `tolerance` (relative): away from depth
    edges and fine structure, where resampling cannot change a value much."""
    padded = np.pad(disp, 1, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    hi, lo = windows.max(axis=(-1, -2)), windows.min(axis=(-1, -2))
    return (hi - lo) <= tolerance * np.maximum(hi, 1e-6)


@pytest.mark.parametrize("mode", ["cross_context", "baseline"])
def test_resized_labels_match_within_resampling(world_dataset, mode):
    """At another input side the labels are resized (bilinear), so they match the view rendered
    at that side up to resampling: closely away from depth edges, loosely at them (errors in
    units of the view's median disparity: far ground near the horizon is tiny in disparity)."""
    dataset, world = world_dataset
    size = 48
    for batch, i, key in _samples(dataset, mode, size):
        entry = _plan_entry(dataset, key)
        h, w = entry["size"]
        region = int(batch["region"][i])
        box = [0, 0, w, h] if mode == "baseline" else entry["regions"][region]["box"]
        want = _rendered(world, key, box, size, bool(batch["flip"][i]))
        got = batch["sc"][i, 0].numpy()
        error = np.abs(got - want) / np.median(want[want > 0])
        smooth = _smooth(want)
        assert np.median(error[smooth]) < 0.005 and np.median(error) < 0.05, (key, mode)
