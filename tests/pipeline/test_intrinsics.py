"""The camera of each image (an intrinsics file, EXIF, the world renderer, or none) and of each
planned view (crop and resize), as `pipeline prepare` records them and `load_dataset` reads them."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.dataset import load_dataset
from pipeline.dataset.camera import Intrinsics, planned_intrinsics, view_intrinsics
from pipeline.dataset.layout import DatasetLayout
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.dataset.verify import prepare_command
from pipeline.world.camera import Camera
from pipeline.world.files import WorldSettings, image_paths, load_scene, render_world
from pipeline.world.render import render

runner = CliRunner()


def _prepare(images: Path, out: Path, **settings) -> Path:
    prepare([str(images)], out, PrepareSettings(**settings), progress=False, workers=1)
    return out


def _jpeg(path: Path, width: int, height: int, focal35: int | None, turn: int = 1) -> Path:
    rng = np.random.default_rng(width + height)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    exif = Image.Exif()
    if focal35 is not None:
        exif.get_ifd(0x8769)[0xA405] = focal35
    if turn != 1:
        exif[0x0112] = turn
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, exif=exif)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# ---- views: crop and resize ----


def test_a_crop_shifts_the_principal_point_and_a_resize_scales_all_four():
    src = Intrinsics(100.0, 120.0, 64.0, 48.0, 128, 96, "dataset")
    view = view_intrinsics(src, (10, 20, 74, 84), 32, 32)  # 64 px square → 32 px: s = 0.5
    assert (view.fx, view.fy, view.cx, view.cy) == (50.0, 60.0, 27.0, 14.0)
    assert (view.width, view.height, view.source) == (32, 32, "dataset")
    # the image centre of a box stays its centre at any size (align_corners=False convention)
    centred = Intrinsics(100.0, 100.0, 42.0, 52.0, 128, 96, "exif")
    assert view_intrinsics(centred, (10, 20, 74, 84), 560, 560).cx == 280.0


@pytest.mark.parametrize("tile", [32, 128])  # regions shrunk to tiles, and one enlarged
def test_a_views_camera_renders_the_view_cut_and_resized_from_the_full_image(tmp_path, tile):
    """Render the view's effective camera at the view's size: its depth is the depth of the
    view the plan cuts from the full image and resizes (exactly the renderer's view of that box,
    and, up to resampling, the full depth map cut and resized as labelgen resizes views)."""
    world = WorldSettings(seed=3, split="train", height=96, width=128)
    render_world(tmp_path / "w", 1, world, workers=1, progress=False)
    out = _prepare(tmp_path / "w", tmp_path / "ds", tile=tile, min_region=48, min_side=16)
    info = load_dataset(out)
    source = info.intrinsics("000000")
    paths = image_paths(tmp_path / "w", "000000")
    scene = load_scene(paths["record"])
    assert source is not None and source.source == "world"
    assert (source.fx, source.cx, source.width) == (scene.camera.fx, scene.camera.cx, 128)
    entry = load_plan_shard(info.layout.plan_shard(0))["000000"]
    cams = planned_intrinsics(source, entry, tile, full_size=(48, 64))
    assert set(cams) == {"full", *(name for name, _ in views(entry))}
    full_depth = Image.fromarray(np.load(paths["depth"]))
    full_valid = Image.fromarray(np.load(paths["mask"]).astype(np.float32))
    for name, box in views(entry)[:3]:
        cam = cams[name]
        camera = Camera(tile, tile, cam.fx, cam.fy, cam.cx, cam.cy, *_pose(scene.camera))
        mine = render(dataclasses.replace(scene, camera=camera), tile, tile, rgb=False)
        exact = render(scene, tile, tile, tuple(box), rgb=False)
        both = mine.valid & exact.valid
        assert (mine.valid == exact.valid).mean() > 0.99 and both.mean() > 0.3
        np.testing.assert_allclose(mine.depth[both], exact.depth[both], rtol=1e-6)
        cut = np.asarray(full_depth.crop(box).resize((tile, tile), Image.BILINEAR))
        ok = np.asarray(full_valid.crop(box).resize((tile, tile), Image.BILINEAR)) > 0.999
        ok &= mine.valid
        rel = np.abs(cut[ok] - mine.depth[ok]) / mine.depth[ok]
        assert ok.mean() > 0.3 and np.median(rel) < 0.01, (name, np.median(rel))


def _pose(camera: Camera) -> tuple:
    return camera.position, camera.rotation


# ---- sources ----


def test_exif_35mm_focal_length_gives_the_intrinsics_of_the_stored_image(tmp_path):
    _jpeg(tmp_path / "in/wide.jpg", 120, 80, focal35=28)
    _jpeg(tmp_path / "in/turned.jpg", 120, 80, focal35=50, turn=6)  # stored upright: 80 x 120
    _jpeg(tmp_path / "in/unknown.jpg", 120, 80, focal35=0)  # 0 means unknown in EXIF
    _jpeg(tmp_path / "in/none.jpg", 120, 80, focal35=None)
    result = prepare([str(tmp_path / "in")], tmp_path / "ds", progress=False, workers=1)
    info = load_dataset(result.out)
    wide = info.intrinsics("wide")
    assert wide == Intrinsics(28 / 36 * 120, 28 / 36 * 120, 60.0, 40.0, 120, 80, "exif")
    turned = info.intrinsics("turned")
    assert (turned.fx, turned.fy, turned.cx, turned.cy) == (50 / 36 * 120, 50 / 36 * 120, 40, 60)
    assert (turned.width, turned.height) == (80, 120)
    assert info.intrinsics("unknown") is None and info.intrinsics("none") is None
    assert result.cameras == {"exif": 2} and "intrinsics: 2 from exif" in result.summary()
    assert info.raw["cameras"]["sources"] == {"dataset": 0, "world": 0, "exif": 2}


def test_an_intrinsics_file_names_images_by_key_or_path_and_wins_over_exif(tmp_path):
    _jpeg(tmp_path / "in/a.jpg", 120, 80, focal35=28)
    _jpeg(tmp_path / "in/sub/b.jpg", 120, 80, focal35=None)
    _jpeg(tmp_path / "in/c.jpg", 96, 96, focal35=None)
    csv = tmp_path / "cams.csv"
    csv.write_text(
        "key,fx,fy,cx,cy,width,height\n"
        "a,100,101,60.5,40.5,,\n"
        "sub__b,200,200,120,80,240,160\n"  # given for the image at twice the stored size
        "gone,1,1,1,1,,\n"
    )
    out = _prepare(tmp_path / "in", tmp_path / "ds", intrinsics=str(csv))
    info = load_dataset(out)
    assert info.intrinsics("a") == Intrinsics(100, 101, 60.5, 40.5, 120, 80, "dataset")
    assert info.intrinsics("sub__b") == Intrinsics(100, 100, 60, 40, 120, 80, "dataset")
    assert info.intrinsics("c") is None
    assert info.raw["cameras"]["unmatched"] == 1 and info.raw["cameras"]["e.g."] == ["gone"]
    assert info.raw["intrinsics"] == str(csv.resolve())
    assert f"--intrinsics {csv.resolve()}" in prepare_command(info)  # pipeline verify's advice
    # JSON, by the image's path as the input was written
    doc = {str(tmp_path / "in/c.jpg"): {"fx": 90, "fy": 90, "cx": 48, "cy": 48}}
    (tmp_path / "cams.json").write_text(json.dumps(doc))
    out2 = _prepare(tmp_path / "in", tmp_path / "ds2", intrinsics=str(tmp_path / "cams.json"))
    assert load_dataset(out2).intrinsics("c") == Intrinsics(90, 90, 48, 48, 96, 96, "dataset")
    assert load_dataset(out2).intrinsics("a").source == "exif"
    # a changed file is another dataset: the re-run is refused
    csv.write_text("key,fx,fy,cx,cy\na,1,1,1,1\n")
    with pytest.raises(ValueError, match="intrinsics_sha256 differ"):
        _prepare(tmp_path / "in", out, intrinsics=str(csv))


def test_a_bad_intrinsics_file_is_one_error_line_naming_it(tmp_path):
    _jpeg(tmp_path / "in/a.jpg", 120, 80, focal35=None)
    bad = tmp_path / "cams.csv"
    for text, says in [
        ("name,fx\na,1\n", "first row must name the columns key"),
        ("key,fx,fy,cx,cy\na,x,1,1,1\n", "line 2: fx is 'x', not a number"),
        ("key,fx,fy,cx,cy,width,height\na,1,1,1,1,80,120\n", "aspect ratio"),
    ]:
        bad.write_text(text)
        args = ["prepare", "--images", str(tmp_path / "in"), "--out", str(tmp_path / "ds")]
        result = runner.invoke(app, [*args, "--intrinsics", str(bad), "--no-progress"])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --intrinsics ") and says in lines[0]
        assert str(bad) in lines[0]


# ---- none, old datasets, identical rebuilds ----


def test_without_intrinsics_nothing_is_recorded_and_old_datasets_load(tmp_path, photo_folder):
    out = _prepare(photo_folder, tmp_path / "ds", shard_size=2)
    info = load_dataset(out)
    assert not DatasetLayout(out).camera_dir.exists()
    assert all(s.camera_sha256 == "" for s in info.shards) and "cameras" not in info.raw
    assert info.intrinsics("img0") is None and info.shard_intrinsics(0) == {}
    # a dataset.json written before intrinsics were recorded loads, and re-preparing it is
    # accepted and rewrites the same shards
    raw = json.loads(info.layout.dataset_json.read_text())
    del raw["intrinsics"]
    info.layout.dataset_json.write_text(json.dumps(raw))
    assert load_dataset(out).intrinsics("img0") is None
    before = _files(out / "images") | _files(out / "plan")
    _prepare(photo_folder, out, shard_size=2)
    assert _files(out / "images") | _files(out / "plan") == before


def test_a_rebuild_writes_identical_bytes_and_intrinsics_never_change_image_or_plan_shards(
    tmp_path,
):
    _jpeg(tmp_path / "in/a.jpg", 120, 80, focal35=None)
    _jpeg(tmp_path / "in/b.jpg", 90, 100, focal35=None)
    plain = _prepare(tmp_path / "in", tmp_path / "plain")
    first = _files(plain)
    _prepare(tmp_path / "in", plain)
    assert _files(plain) == first
    csv = tmp_path / "cams.csv"
    csv.write_text("key,fx,fy,cx,cy\nb,80,80,45,50\n")
    cams = _prepare(tmp_path / "in", tmp_path / "cams", intrinsics=str(csv))
    with_cams = _files(cams)
    for name in first:
        if name != "dataset.json":
            assert with_cams[name] == first[name], name
    assert set(with_cams) - set(first) == {"camera/000000.json"}
    _prepare(tmp_path / "in", cams, intrinsics=str(csv))
    assert _files(cams) == with_cams
