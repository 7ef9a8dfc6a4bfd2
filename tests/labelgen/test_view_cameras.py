"""The camera of every labelled view: label records carry each view's effective intrinsics when the
dataset knows the image's camera (`labelgen run`, `pipeline world labels`), records of images
without one are as before, and `pipeline verify` checks the camera sidecars."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import read_plan
from lgrun_helpers import label, spec_str, write_photos
from typer.testing import CliRunner

from labelgen.teachers import load_teacher, resolve_teacher
from pipeline.cli import app
from pipeline.dataset import load_dataset
from pipeline.dataset.camera import planned_intrinsics, world_intrinsics
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.labels.store import open_reader
from pipeline.world.files import WorldSettings, load_scene, render_world
from pipeline.world.labels import full_shape, write_world_column

PHOTOS = {"a": (300, 420), "b": (400, 380)}
OLD_FIELDS = {"kind", "maps", "flags", "error"}
runner = CliRunner()


def _records(dataset: Path, column: str) -> dict[str, dict]:
    info = load_dataset(dataset)
    out = {}
    for shard in info.shards:
        with open_reader(info.layout.column_dir(column) / f"{shard.name}.tar") as reader:
            out.update({key: reader.record(key) for key in reader.keys})
    return out


def _as_json(views: dict) -> dict:
    return {name: cam.to_json() for name, cam in views.items()}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, ckpt) -> tuple[Path, Path]:
    """The same two photos prepared without cameras and with a camera for `a`, both labelled."""
    root = tmp_path_factory.mktemp("cams")
    folder = write_photos(root / "photos", PHOTOS)
    table = root / "cams.csv"
    table.write_text("key,fx,fy,cx,cy\na,300,310,200.5,150.25\n")
    plain, cams = root / "plain", root / "cams"
    prepare([str(folder)], plain, PrepareSettings(shard_size=2), progress=False, workers=1)
    settings = PrepareSettings(shard_size=2, intrinsics=str(table))
    prepare([str(folder)], cams, settings, progress=False, workers=1)
    for dataset in (plain, cams):
        label(dataset, [spec_str("dav", ckpt)])
    return plain, cams


def test_labelgen_records_carry_every_views_planned_intrinsics(labelled, ckpt):
    _, cams = labelled
    records, plan, info = _records(cams, "dav"), read_plan(cams), load_dataset(cams)
    teacher = load_teacher(resolve_teacher(spec_str("dav", ckpt)))
    entry = plan["a"]
    camera = info.intrinsics("a")
    assert camera is not None and (camera.fx, camera.source) == (300.0, "dataset")
    full = teacher.full_view_size(*entry["size"])
    want = planned_intrinsics(camera, entry, info.plan_params.tile, full)
    got = records["a"]["intrinsics"]
    assert got == _as_json(want)
    assert set(got) == set(records["a"]["maps"])  # every labelled view, and only those
    assert (got["full"]["height"], got["full"]["width"]) == full
    assert got["full"]["fx"] == pytest.approx(300.0 * full[1] / entry["size"][1])
    # b has no camera: its record is the one written before cameras were recorded
    assert set(records["b"]) == OLD_FIELDS


def test_without_a_camera_records_and_maps_are_as_before(labelled):
    plain, cams = labelled
    old, new = _records(plain, "dav"), _records(cams, "dav")
    for key in PHOTOS:
        assert set(old[key]) == OLD_FIELDS
        assert old[key] == {k: v for k, v in new[key].items() if k != "intrinsics"}
    info_old, info_new = load_dataset(plain), load_dataset(cams)
    with (
        open_reader(info_old.layout.column_dir("dav") / "000000.tar") as a,
        open_reader(info_new.layout.column_dir("dav") / "000000.tar") as b,
    ):
        for key in PHOTOS:
            for name in old[key]["maps"]:
                assert np.array_equal(a.read(key, name), b.read(key, name), equal_nan=True)


@pytest.fixture(scope="module")
def world_dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world-cams")
    world = root / "world"
    render_world(world, 3, WorldSettings(seed=5, height=120, width=180), workers=1, progress=False)
    plan = PrepareSettings(tile=64, min_region=80, regions=2, shard_size=2)
    dataset = prepare([str(world)], root / "ds", plan, progress=False, workers=1).out
    write_world_column(dataset, world, "exact", full_side=48, progress=False)
    return dataset, world


def test_world_labels_records_carry_the_scenes_view_intrinsics(world_dataset):
    dataset, world = world_dataset
    info, records, plan = load_dataset(dataset), _records(dataset, "exact"), read_plan(dataset)
    assert len(records) == 3
    for key, record in records.items():
        height, width = plan[key]["size"]
        scene_camera = load_scene(world / f"{key}.json").camera
        camera = world_intrinsics(scene_camera, height, width)
        assert info.intrinsics(key) == camera  # the dataset's sidecar holds the scene's camera
        full = full_shape(height, width, 48)
        want = planned_intrinsics(camera, plan[key], info.plan_params.tile, full)
        assert record["intrinsics"] == _as_json(want)
        assert set(record["intrinsics"]) == set(record["maps"])
        assert record["intrinsics"]["full"]["fx"] == pytest.approx(
            scene_camera.fx * full[1] / width
        )
        sc = plan[key]["regions"][0]["box"]
        assert record["intrinsics"]["r0.sc"]["cx"] == pytest.approx(
            (scene_camera.cx - sc[0]) * 64 / (sc[2] - sc[0])
        )


def test_a_damaged_or_missing_camera_sidecar_fails_verify(world_dataset, tmp_path):
    dataset = Path(shutil.copytree(world_dataset[0], tmp_path / "ds", symlinks=True))
    assert runner.invoke(app, ["verify", str(dataset), "--no-progress"]).exit_code == 0
    sidecar = dataset / "camera" / "000001.json"
    data = bytearray(sidecar.read_bytes())
    data[len(data) // 2] ^= 0x01
    sidecar.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(dataset), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "camera/000001.json" in result.output and "checksum" in result.output
    sidecar.unlink()
    result = runner.invoke(app, ["verify", str(dataset), "--no-progress"])
    assert result.exit_code == 1 and "camera/000001.json" in result.output
    assert "missing" in result.output
