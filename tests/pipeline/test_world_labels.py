"""Label columns of the world: exact depth of every planned view, and degraded variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.dataset import load_dataset
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.labels.column import LabelColumn
from pipeline.labels.store import open_reader
from pipeline.world.degradation import Degradation
from pipeline.world.files import WorldSettings, load_scene, render_world
from pipeline.world.labels import view_label, write_world_column
from pipeline.world.render import render


@pytest.fixture(scope="module")
def world_dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world-labels")
    world = root / "world"
    render_world(world, 3, WorldSettings(seed=5, height=120, width=180), workers=1, progress=False)
    plan = PrepareSettings(tile=48, min_region=72, shard_size=2)
    return prepare([str(world)], root / "ds", plan).out, world


def _maps(dataset: Path, column: str, shard: int = 0) -> dict[str, dict[str, np.ndarray]]:
    with open_reader(LabelColumn(dataset, column).shard_path(shard)) as reader:
        return {k: {n: reader.read(k, n) for n in reader.names(k)} for k in reader.keys}


def test_exact_column_holds_metric_depth_of_every_planned_view(world_dataset):
    dataset, world = world_dataset
    assert write_world_column(dataset, world, "exact", progress=False) == ["000000", "000001"]
    manifest = LabelColumn(dataset, "exact").manifest
    assert (manifest.output_kind, manifest.invariance, manifest.extra["options"]) == (
        "metric_depth",
        "metric",
        {},
    )
    maps = _maps(dataset, "exact")
    key = next(iter(maps))
    scene = load_scene(world / f"{key}.json")
    view = render(scene, 48, 72, rgb=False)  # full: short side at the tile side (48)
    full = maps[key]["full"]
    assert full.shape == (48, 72)
    np.testing.assert_allclose(full[view.valid], view.depth[view.valid], rtol=1e-3)
    assert np.isinf(full[~view.valid]).all()  # nothing hit: infinitely far (disparity 0)
    assert {"r0.sc", "r0.t0", "r1.sc"} <= set(maps[key])
    # done shards are kept: a second run writes nothing
    assert write_world_column(dataset, world, "exact", progress=False) == []


def test_degraded_column_is_disparity_with_its_parameters_recorded(world_dataset):
    dataset, world = world_dataset
    deg = Degradation(resolution=16, distortion=0.4, bias=0.2, noise=0.05, seed=2)
    write_world_column(dataset, world, "degraded", deg, progress=False)
    manifest = LabelColumn(dataset, "degraded").manifest
    assert manifest.output_kind == "disparity" and manifest.invariance == "affine"
    assert manifest.extra["options"]["resolution"] == 16
    with pytest.raises(ValueError, match="different weights"):
        write_world_column(dataset, world, "degraded", Degradation(noise=0.1), progress=False)
    again = Degradation(noise=0.1)
    assert write_world_column(dataset, world, "degraded", again, overwrite=True, progress=False)
    assert load_dataset(dataset).shards  # the dataset itself is untouched


def _scene(world: Path):
    return load_scene(world / "000000.json")


def test_low_input_resolution_loses_the_detail_a_tile_keeps(world_dataset):
    """The full view seen at a low resolution is smooth where the exact view has edges."""
    _, world = world_dataset
    scene, box = _scene(world), (0, 0, 180, 120)
    exact = view_label(scene, box, 96, 144, Degradation(), "k", "full")
    disp = np.where(np.isfinite(exact), 1 / exact, 0.0)
    low = view_label(scene, box, 96, 144, Degradation(resolution=12), "k", "full")
    edges = lambda d: (np.diff(d, axis=1) ** 2).sum()  # noqa: E731  (energy of fine detail)
    assert edges(low) < 0.5 * edges(disp)
    assert np.corrcoef(low.ravel(), disp.ravel())[0, 1] > 0.8  # the same scene, blurred


def test_distortion_is_monotone_and_a_pure_function_of_seed_key_and_view(world_dataset):
    _, world = world_dataset
    scene, box = _scene(world), (10, 10, 90, 90)
    plain = view_label(scene, box, 40, 40, Degradation(distortion=1e-9), "k", "r0.sc")
    warped = view_label(scene, box, 40, 40, Degradation(distortion=0.5, seed=1), "k", "r0.sc")
    order = np.argsort(plain.ravel(), kind="stable")
    assert (np.diff(warped.ravel()[order]) >= -1e-6).all()  # ranks kept: monotone
    assert not np.allclose(warped, plain, rtol=1e-3)
    same = view_label(scene, box, 40, 40, Degradation(distortion=0.5, seed=1), "k", "r0.sc")
    other = view_label(scene, box, 40, 40, Degradation(distortion=0.5, seed=1), "k", "r1.sc")
    assert np.array_equal(same, warped) and not np.array_equal(other, warped)


def test_bad_degradation_parameters_are_refused():
    with pytest.raises(ValueError, match="--resolution"):
        Degradation(resolution=2)
    with pytest.raises(ValueError, match="--noise"):
        Degradation(noise=-1)


def test_in_a_log_the_column_is_reported_in_progress_lines_not_a_bar(world_dataset, capsys):
    dataset, world = world_dataset
    write_world_column(dataset, world, "logged", Degradation(resolution=16), progress=True)
    err = capsys.readouterr().err
    assert "world labels logged: 2/2 shard (100%)" in err and "\r" not in err
