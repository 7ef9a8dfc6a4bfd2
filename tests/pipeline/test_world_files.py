"""`pipeline world render`: the split folder, its byte-for-byte determinism, resume, and a train
split that `pipeline prepare` takes as it is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.images.sources import list_items
from pipeline.world.cli import world_app
from pipeline.world.files import (
    WorldSettings,
    image_paths,
    load_scene,
    read_world,
    render_world,
)
from pipeline.world.render import render

SMALL = WorldSettings(seed=1, split="train", height=64, width=96)


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(world_app, name="world")  # as `pipeline.cli` mounts it
    return app


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_split_folder_holds_rgb_depth_mask_and_scene(tmp_path):
    result = render_world(tmp_path / "w", 2, SMALL, workers=1, progress=False)
    assert (result.rendered, result.skipped) == (2, 0)
    paths = image_paths(tmp_path / "w", "000001")
    rgb = np.asarray(Image.open(paths["rgb"]))
    depth, mask = np.load(paths["depth"]), np.load(paths["mask"])
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8
    assert depth.dtype == np.float32 and mask.dtype == bool and depth.shape == mask.shape
    assert (depth[~mask] == 0).all() and (depth[mask] > 0).all()
    record = json.loads(paths["record"].read_text())
    assert record["index"] == 1 and record["settings"]["seed"] == 1
    view = render(load_scene(paths["record"]), 64, 96)  # the scene redraws the image exactly
    np.testing.assert_array_equal(view.rgb, rgb)
    np.testing.assert_array_equal(view.depth, depth)
    world = read_world(tmp_path / "w")
    assert world["images"] == 2 and world["split"] == "train" and world["generator"]


def test_same_settings_give_the_same_bytes_with_any_number_of_workers(tmp_path):
    render_world(tmp_path / "a", 3, SMALL, workers=1, progress=False)
    render_world(tmp_path / "b", 3, SMALL, workers=2, progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    other = WorldSettings(seed=2, split="train", height=64, width=96)
    render_world(tmp_path / "c", 1, other, workers=1, progress=False)
    assert _files(tmp_path / "c")["000000.png"] != _files(tmp_path / "a")["000000.png"]


def test_resume_skips_complete_images_and_redoes_incomplete_ones(tmp_path):
    out = tmp_path / "w"
    render_world(out, 2, SMALL, workers=1, progress=False)
    before = _files(out)
    stamp = (out / "000000.png").stat().st_mtime_ns
    again = render_world(out, 3, SMALL, workers=1, progress=False)
    assert (again.rendered, again.skipped) == (1, 2)
    assert (out / "000000.png").stat().st_mtime_ns == stamp
    (out / "000001.mask.npy").unlink()  # an interrupted image
    redo = render_world(out, 3, SMALL, workers=1, progress=False)
    assert (redo.rendered, redo.skipped) == (1, 2)
    after = _files(out)
    assert all(after[name] == data for name, data in before.items() if name != "world.json")
    assert read_world(out)["images"] == 3


def test_a_folder_of_other_settings_is_refused(tmp_path):
    render_world(tmp_path / "w", 1, SMALL, workers=1, progress=False)
    other = WorldSettings(seed=1, split="train", height=64, width=90)
    with pytest.raises(ValueError, match=r"width 96 \(asked 90\)"):
        render_world(tmp_path / "w", 1, other, workers=1, progress=False)
    with pytest.raises(ValueError, match="--split"):
        WorldSettings(split="val")


def test_prepare_takes_a_train_split_as_it_is_and_lists_only_the_images(tmp_path):
    out = tmp_path / "train"
    render_world(out, 3, WorldSettings(seed=0, split="train", height=72, width=96), 1, False)
    items = list_items([str(out)])
    assert [item.key for item in items] == ["000000", "000001", "000002"]
    assert all(item.path.endswith(".png") for item in items)
    result = prepare([str(out)], tmp_path / "ds", PrepareSettings(), progress=False, workers=1)
    assert result.num_samples == 3 and not result.rejected


def test_cli_renders_resumes_and_reports_bad_flags(tmp_path):
    runner = CliRunner()
    args = ["world", "render", "--out", str(tmp_path / "w"), "--images", "2", "--seed", "3"]
    args += ["--split", "test", "--height", "40", "--width", "60", "--workers", "1"]
    first = runner.invoke(_cli(), args)
    assert first.exit_code == 0, first.output
    assert "rendered 2, 0 already there" in first.output
    second = runner.invoke(_cli(), args)
    assert "rendered 0, 2 already there" in second.output
    bad = runner.invoke(_cli(), [*args[:-2], "--samples", "0"])
    assert bad.exit_code == 2 and "--samples" in bad.output
    assert runner.invoke(_cli(), ["world", "render", "--help"]).exit_code == 0
