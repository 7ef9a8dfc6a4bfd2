"""Every benchmark sample carries its image's intrinsics (pixels of the image as loaded, image
centre at `width / 2`): published constants scaled to the image, calibration files read from the
layout, KITTI's shifted by its crop, the world's equal to its rendered camera."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_layouts import KITTI_LEFT, KITTI_TOP, SIZE, make_layout
from sharp_layouts import SINTEL_K, make_ibims, make_middlebury, make_sintel
from typer.testing import CliRunner

from evaluation.cli import app
from evaluation.datasets import DATASET_LOADERS, DatasetError, open_dataset
from evaluation.datasets.intrinsics import DIODE, MOTORCYCLE_FULL, NYU_RGB
from evaluation.middlebury import FOCAL_PX, load_motorcycle
from pipeline.dataset.camera import world_intrinsics
from pipeline.world.files import WorldSettings, render_world, rendered_camera

H, W = SIZE


def _values(intrinsics) -> tuple[float, float, float, float, int, int]:
    i = intrinsics
    return (i.fx, i.fy, i.cx, i.cy, i.width, i.height)


def _first(ds):
    return ds.load(ds.keys()[0], rgb=False)


def test_every_loader_states_where_its_intrinsics_come_from():
    for name in DATASET_LOADERS.names():
        source = DATASET_LOADERS.get(name).intrinsics_source
        assert source and source != "unknown", name


def test_nyu_constants_are_scaled_to_the_image_size(tmp_path):
    ds = open_dataset(make_layout("nyu", tmp_path).arg())
    fx, fy, cx, cy = NYU_RGB
    sx, sy = W / 640, H / 480  # the synthetic frames are 64x48, the constants' 640x480
    expected = (fx * sx, fy * sy, (cx + 0.5) * sx, (cy + 0.5) * sy, W, H)
    assert _values(_first(ds).intrinsics) == pytest.approx(expected)
    assert ds.describe()["intrinsics_source"] == type(ds).intrinsics_source


def test_diode_constants_are_scaled_to_the_image_size(tmp_path):
    ds = open_dataset(make_layout("diode", tmp_path).arg())
    fx, fy, cx, cy = DIODE
    sx, sy = W / 1024, H / 768
    expected = (fx * sx, fy * sy, cx * sx, cy * sy, W, H)
    keys = ds.keys()
    for key in keys:
        assert _values(ds.load(key, rgb=False).intrinsics) == pytest.approx(expected)


P_RECT_02 = (
    "7.215377e+02 0 6.095593e+02 4.485728e+01 0 7.215377e+02 1.728540e+02 2.163791e-01 0 0 1 0"
)


def test_kitti_reads_p_rect_02_of_its_date_and_shifts_it_by_the_benchmark_crop(tmp_path):
    layout = make_layout("kitti", tmp_path)
    assert _first(open_dataset(layout.arg())).intrinsics is None  # no calibration file
    calib = layout.path / "2011_09_26" / "calib_cam_to_cam.txt"
    calib.write_text(
        f"calib_time: x\nS_rect_02: 1.242000e+03 3.750000e+02\nP_rect_02: {P_RECT_02}\n"
    )
    sample = _first(open_dataset(layout.arg()))
    expected = (721.5377, 721.5377, 609.5593 + 0.5 - KITTI_LEFT, 172.854 + 0.5 - KITTI_TOP)
    assert _values(sample.intrinsics) == pytest.approx((*expected, 1216, 352))
    assert sample.depth.shape == (352, 1216)
    calib.write_text("P_rect_02: 1 2 3\n")
    with pytest.raises(DatasetError, match="calib_cam_to_cam.txt"):
        _first(open_dataset(layout.arg()))


def test_scannet_reads_intrinsic_color_of_its_scene(tmp_path):
    layout = make_layout("scannet", tmp_path)
    folder = layout.path / "scene0100_00" / "intrinsic"
    folder.mkdir()
    k = "1170.187988 0 647.75 0\n0 1170.187988 483.75 0\n0 0 1 0\n0 0 0 1\n"
    (folder / "intrinsic_color.txt").write_text(k)
    ds = open_dataset(layout.arg())
    sx, sy = W / 1296, H / 968
    expected = (1170.187988 * sx, 1170.187988 * sy, 648.25 * sx, 484.25 * sy, W, H)
    keys = ds.keys()
    for key in keys:
        got = ds.load(key, rgb=False).intrinsics
        if key.startswith("scene0100_00"):
            assert _values(got) == pytest.approx(expected)
        else:
            assert got is None  # no file for that scene: unknown, not guessed


def test_eth3d_reads_the_scene_cameras_and_maps_images_to_cameras(tmp_path):
    layout = make_layout("eth3d", tmp_path, n=4)
    one = layout.path / "rgb" / "courtyard" / "dslr_calibration_undistorted"
    one.mkdir()
    (one / "cameras.txt").write_text(
        "# Camera list\n0 PINHOLE 6048 4032 3410.0 3409.0 3121.0 2067.0\n"
    )
    two = layout.path / "rgb" / "office" / "dslr_calibration_undistorted"
    two.mkdir()
    (two / "cameras.txt").write_text(
        "1 PINHOLE 6048 4032 1000 1001 3000 2000\n2 PINHOLE 6048 4032 2000 2001 3024 2016\n"
    )
    (two / "images.txt").write_text(
        "# header\n5 1 0 0 0 0 0 0 2 dslr_images_undistorted/DSC_0001.JPG\n1 2 3 -1\n"
        "6 1 0 0 0 0 0 0 1 dslr_images_undistorted/DSC_0003.JPG\n\n"
    )
    ds = open_dataset(layout.arg())
    sx, sy = W / 6048, H / 4032  # the synthetic frames are 64x48
    expected = {
        "DSC_0000": (3410.0 * sx, 3409.0 * sy, 3121.0 * sx, 2067.0 * sy),
        "DSC_0001": (2000 * sx, 2001 * sy, 3024 * sx, 2016 * sy),
        "DSC_0002": (3410.0 * sx, 3409.0 * sy, 3121.0 * sx, 2067.0 * sy),
        "DSC_0003": (1000 * sx, 1001 * sy, 3000 * sx, 2000 * sy),
    }
    keys = ds.keys()
    for key in keys:
        got = _values(ds.load(key, rgb=False).intrinsics)
        assert got == pytest.approx((*expected[key.rsplit("/", 1)[1]], W, H)), key


def test_sintel_reads_each_frame_cam_file(tmp_path):
    ds = open_dataset(make_sintel(tmp_path).arg())
    fx, fy, cx, cy = SINTEL_K
    keys = ds.keys()
    for key in keys:
        assert _values(ds.load(key, rgb=False).intrinsics) == (fx, fy, cx + 0.5, cy + 0.5, 32, 24)


def test_ibims_reads_its_calib_file_for_the_640x480_frames(tmp_path):
    layout = make_ibims(tmp_path)
    ds = open_dataset(layout.arg())
    sx, sy = 32 / 640, 24 / 480  # the fixture's frames are 32x24
    expected = (559.62 * sx, 558.14 * sy, 362.37 * sx, 242.19 * sy, 32, 24)
    assert _values(_first(ds).intrinsics) == pytest.approx(expected)
    calib = Path(layout.path) / layout.top / "calib" / "corridor_01.txt"
    calib.write_text("559.62 0 361.87\n0 558.14 241.69\n0 0 1\n")  # a 3x3 matrix reads the same
    got = open_dataset(layout.arg()).load("rgb/corridor_01", rgb=False).intrinsics
    assert _values(got) == pytest.approx(expected)
    calib.unlink()
    assert open_dataset(layout.arg()).load("rgb/corridor_01", rgb=False).intrinsics is None


def test_middlebury2014_reads_cam0_of_calib_txt(tmp_path):
    ds = open_dataset(make_middlebury(tmp_path).arg())
    keys = ds.keys()
    for key in keys:
        assert _values(ds.load(key).intrinsics) == (1000.0, 1000.0, 16.0, 12.0, 32, 24)


def test_builtin_motorcycle_is_the_full_calibration_at_quarter_size():
    sample = open_dataset("middlebury").load("motorcycle")
    rgb, _ = load_motorcycle()
    f, _, cx, cy = MOTORCYCLE_FULL
    expected = (f / 4, f / 4, (cx + 0.5) / 4, (cy + 0.5) / 4, rgb.shape[1], rgb.shape[0])
    assert _values(sample.intrinsics) == pytest.approx(expected)
    assert sample.intrinsics.fx == pytest.approx(FOCAL_PX, abs=1e-3)  # the depth's focal length


def test_world_intrinsics_are_the_rendered_camera(tmp_path):
    out = tmp_path / "world"
    render_world(out, 2, WorldSettings(seed=0, split="test", height=30, width=40), 1, False)
    ds = open_dataset(f"world={out}")
    keys = ds.keys()
    for key in keys:
        camera = rendered_camera(out / f"{key}.png")
        assert camera is not None
        assert ds.load(key).intrinsics == world_intrinsics(camera, 30, 40)
    record = json.loads((out / "000001.json").read_text())
    record["scene"]["camera"] = {"fx": "x"}
    (out / "000001.json").write_text(json.dumps(record))
    with pytest.raises(DatasetError, match="000001.json"):
        ds.load("000001")
    (out / "000001.json").unlink()
    assert open_dataset(f"world={out}").load("000001").intrinsics is None


def test_summary_records_each_dataset_intrinsics_source(tmp_path):
    _, depth = load_motorcycle()
    path = tmp_path / "predictions" / "middlebury" / "motorcycle.npy"
    path.parent.mkdir(parents=True)
    np.save(path, np.where(np.isfinite(depth), 1.0 / depth, 0.0).astype(np.float32))
    args = ["score", str(tmp_path), "--dataset", "middlebury", "--pred-space", "disparity"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / "summary.json").read_text())["datasets"]["middlebury"]
    assert (
        entry["dataset"]["intrinsics_source"] == DATASET_LOADERS.get("middlebury").intrinsics_source
    )
