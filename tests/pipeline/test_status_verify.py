"""`pipeline status` and `pipeline verify` on a dataset with label columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dataset_helpers import prepare_small, write_fake_column
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.dataset.status import dataset_status, format_status
from pipeline.dataset.verify import verify_dataset

runner = CliRunner()


@pytest.fixture
def dataset(photo_folder, tmp_path):
    return prepare_small(photo_folder, tmp_path / "ds", shard_size=2)  # 5 images -> 3 shards


def _flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_status_counts_done_and_missing_shards(dataset):
    write_fake_column(dataset, "alpha", shards={0, 2})
    write_fake_column(dataset, "beta", backend="zarr")
    status = dataset_status(dataset)
    alpha, beta = status["columns"]["alpha"], status["columns"]["beta"]
    assert (alpha["done"], alpha["missing"], alpha["samples"]) == (2, 1, 3)
    assert (beta["done"], beta["missing"], beta["samples"]) == (3, 0, 5)
    assert 0 < alpha["bytes_per_pixel"] < 1.0
    assert status["shards"] == 3 and status["samples"] == 5
    text = format_status(status)
    assert "alpha: missing shards 000001" in text and "beta" in text
    out = runner.invoke(app, ["status", str(dataset), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["columns"]["alpha"]["shards"]["000001"]["status"] == "missing"


def test_verify_passes_on_an_intact_dataset(dataset):
    write_fake_column(dataset, "alpha")
    write_fake_column(dataset, "beta", backend="zarr")
    report = verify_dataset(dataset, progress=False)
    assert report.ok, report.problems
    assert report.checked == 9 and report.maps > 0
    assert runner.invoke(app, ["verify", str(dataset)]).exit_code == 0


@pytest.mark.parametrize("backend", ["wds", "zarr"])
def test_verify_catches_a_single_flipped_byte_in_a_label_shard(dataset, backend):
    write_fake_column(dataset, "alpha", backend=backend)
    shard = dataset / "labels" / "alpha" / ("000001.tar" if backend == "wds" else "000001.zarr")
    target = shard if backend == "wds" else sorted(p for p in shard.rglob("*") if p.is_file())[-1]
    _flip_byte(target)
    report = verify_dataset(dataset, progress=False)
    assert not report.ok
    assert len(report.problems) == 1 and "000001" in report.problems[0]
    result = runner.invoke(app, ["verify", str(dataset)])
    assert result.exit_code == 1 and "000001" in result.output


def test_verify_catches_image_and_plan_corruption_and_missing_shards(dataset):
    write_fake_column(dataset, "alpha")
    _flip_byte(dataset / "images" / "000000.tar", offset=700)
    (dataset / "plan" / "000002.json").write_text("{}")
    (dataset / "labels" / "alpha" / "000001.tar").unlink()
    problems = verify_dataset(dataset, progress=False).problems
    text = "\n".join(problems)
    assert "images/000000.tar" in text and "checksum" in text
    assert "000002.json" in text
    assert "000001.tar" in text and "missing" in text


def test_verify_of_one_column_and_an_unknown_column(dataset):
    write_fake_column(dataset, "alpha")
    assert verify_dataset(dataset, ["alpha"], progress=False).ok
    report = verify_dataset(dataset, ["nope"], progress=False)
    assert not report.ok and "no such column" in report.problems[0]


def test_status_of_a_folder_that_is_not_a_dataset(tmp_path):
    result = runner.invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2
    assert "pipeline prepare" in result.output


def test_verify_fails_on_a_failed_label_shard_and_names_the_fix(dataset):
    from pipeline.labels.manifest import record_shard, shard_entry

    write_fake_column(dataset, "alpha", backend="zarr")
    column_dir = dataset / "labels" / "alpha"
    record_shard(column_dir, "000001", shard_entry("failed", error="RuntimeError: disk on fire"))
    report = verify_dataset(dataset, progress=False)
    assert not report.ok and len(report.problems) == 1
    problem = report.problems[0]
    assert "000001" in problem and "'alpha'" in problem and "disk on fire" in problem
    assert f"labelgen run --dataset {dataset} --teacher alpha=fake:none" in problem
    assert "--format zarr" in problem and problem.endswith("--redo 000001")
    result = runner.invoke(app, ["verify", str(dataset)])
    assert result.exit_code == 1
    assert "BAD " in result.output and "disk on fire" in result.output
    assert "--redo 000001" in result.output


def test_verify_lists_shards_not_labelled_yet_without_failing(dataset):
    write_fake_column(dataset, "alpha", shards={0})
    report = verify_dataset(dataset, progress=False)
    assert report.ok, report.problems
    assert len(report.notes) == 1
    note = report.notes[0]
    assert "alpha: shards 000001-000002 not labelled yet (not an error)" in note
    assert "labelgen run" in note and "--redo" not in note
    result = runner.invoke(app, ["verify", str(dataset)])
    assert result.exit_code == 0, result.output
    assert "not labelled yet" in result.output and result.output.strip().endswith("OK")


def test_verify_names_the_redo_command_for_a_corrupt_label_shard(dataset):
    write_fake_column(dataset, "alpha")
    _flip_byte(dataset / "labels" / "alpha" / "000002.tar")
    (problem,) = verify_dataset(dataset, progress=False).problems
    assert "checksum" in problem and problem.endswith("--redo 000002")


# ---- columns that do not fit the dataset, and what to do about bad image and plan shards ------


def test_status_shows_a_column_copied_from_another_dataset_as_foreign(dataset, photo_folder):
    import shutil

    other = prepare_small(photo_folder, dataset.parent / "other", shard_size=3)  # 2 shards
    write_fake_column(other, "alpha")
    shutil.copytree(other / "labels" / "alpha", dataset / "labels" / "alpha")
    alpha = dataset_status(dataset)["columns"]["alpha"]
    assert (alpha["done"], alpha["foreign"], alpha["missing"]) == (0, 2, 1)
    assert alpha["samples"] == 0 and alpha["bytes"] == 0 and alpha["maps"]["maps"] == 0
    assert [e["status"] for e in alpha["shards"].values()] == ["foreign", "foreign", "missing"]
    result = runner.invoke(app, ["status", str(dataset)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("alpha "))
    assert row.split()[1:6] == ["0", "0", "1", "2", "0"]  # done failed missing foreign samples
    assert "alpha: made for another crop plan" in result.output
    assert "--overwrite" in result.output


def test_status_shows_foreign_and_damaged_shards_with_the_fix(dataset):
    from pipeline.labels.manifest import ColumnManifest

    write_fake_column(dataset, "alpha")
    path = dataset / "labels" / "alpha" / "manifest.json"
    manifest = ColumnManifest.load(path)
    manifest.shards["000000"]["count"] = 26  # labelled from another dataset's shard 000000
    manifest.save(path)
    (dataset / "labels" / "alpha" / "000002.tar").unlink()
    alpha = dataset_status(dataset)["columns"]["alpha"]
    assert (alpha["done"], alpha["foreign"], alpha["damaged"]) == (1, 1, 1)
    assert alpha["samples"] == 2  # shard 000001 only
    text = format_status(dataset_status(dataset))
    assert "alpha: foreign shards 000000 (labelled from other images" in text
    assert "--redo 000000" in text
    assert "alpha: damaged shards 000002" in text and "--redo 000002" in text


def test_verify_says_how_to_repair_a_bad_image_or_plan_shard(dataset):
    write_fake_column(dataset, "alpha")
    _flip_byte(dataset / "images" / "000001.tar", offset=700)
    (dataset / "plan" / "000002.json").write_text("{}")
    problems = verify_dataset(dataset, progress=False).problems
    image = next(p for p in problems if "images/000001.tar" in p)
    plan = next(p for p in problems if "000002.json" in p)
    prepare = f"pipeline prepare --images {dataset.parent / 'photos'} --out {dataset}"
    for problem in (image, plan):
        assert "restore the" in problem and f"`{prepare} --shard-size 2`" in problem
    assert "the image shard is corrupt" in image
    assert "relabel shard 000001 of every column made from it" in image
    assert image.endswith("--teacher alpha=fake:none --precision fp32 --redo 000001")
    assert "the plan is corrupt" in plan and "relabel" not in plan


def test_status_of_a_world_column_names_its_infinite_depth_as_the_sky(tmp_path):
    """The world's depth is infinite in the sky by construction: status says so rather than
    leaving `inf` maps to look like a labelling fault; a teacher's `inf` stays unexplained."""
    from pipeline.dataset.prepare import PrepareSettings, prepare
    from pipeline.dataset.status import SKY, _flagged
    from pipeline.world.files import WorldSettings, render_world
    from pipeline.world.labels import write_world_column

    world = tmp_path / "world"
    render_world(world, 2, WorldSettings(seed=5, height=120, width=180), workers=1, progress=False)
    plan = PrepareSettings(tile=48, min_region=72, shard_size=2)
    dataset = prepare([str(world)], tmp_path / "ds", plan, progress=False).out
    write_world_column(dataset, world, "world-exact", progress=False)
    status = dataset_status(dataset)
    col = status["columns"]["world-exact"]
    assert col["maps"]["map_flags"].get("inf"), col["maps"]  # the scenes show some sky
    (line,) = [ln for ln in format_status(status).splitlines() if "flagged maps" in ln]
    assert line.startswith("world-exact: flagged maps: inf ") and line.endswith(SKY), line
    teacher = {**col, "adapter": "depth-anything-v2"}
    assert SKY not in _flagged(teacher) and _flagged(teacher).startswith("inf ")


def test_verify_prints_a_relabel_command_that_works_from_another_directory(tmp_path, monkeypatch):
    """A column labelled with relative paths (`--dataset ds --teacher t=...:ckpt`): the command
    verify prints for a damaged shard names both absolutely, so it runs from anywhere."""
    import shlex

    from dataset_helpers import scene_image
    from PIL import Image

    from labelgen.cli import app as labelgen_app
    from labelgen.teachers import write_tiny_checkpoint

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    (here / "photos").mkdir(parents=True)
    elsewhere.mkdir()
    Image.fromarray(scene_image(120, 160, 0)).save(here / "photos" / "p.png")
    write_tiny_checkpoint("depth-anything-v2", here / "ckpt")
    monkeypatch.chdir(here)
    prepare_small(Path("photos"), Path("ds"), shard_size=1)
    label = ["run", "--dataset", "ds", "--teacher", "t=depth-anything-v2:ckpt"]
    label += ["--device", "cpu", "--workers", "0", "--no-progress"]
    assert runner.invoke(labelgen_app, label).exit_code == 0
    _flip_byte(here / "ds" / "labels" / "t" / "000000.tar")
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["verify", "../here/ds", "--no-progress"])
    assert result.exit_code != 0
    (line,) = [ln for ln in result.output.splitlines() if "labelgen run" in ln]
    command = line[line.index("labelgen run") :]
    args = shlex.split(command)
    assert args[:2] == ["labelgen", "run"] and args[-2:] == ["--redo", "000000"], command
    relabel = runner.invoke(labelgen_app, [*args[1:], "--device", "cpu", "--workers", "0"])
    assert relabel.exit_code == 0, relabel.output
    assert verify_dataset(here / "ds", progress=False).problems == []


def test_the_prepare_command_verify_prints_works_from_any_directory(tmp_path, monkeypatch):
    from dataset_helpers import write_photos

    from pipeline.dataset import load_dataset
    from pipeline.dataset.verify import prepare_command

    monkeypatch.chdir(tmp_path)
    write_photos(tmp_path / "photos")
    dataset = prepare_small(Path("photos"), tmp_path / "ds")  # the inputs typed relative
    command = prepare_command(load_dataset(dataset))
    assert f"--images {tmp_path / 'photos'} " in command
    monkeypatch.chdir(tmp_path / "ds")  # elsewhere: the same inputs and settings are accepted
    again = prepare_small(tmp_path / "photos", tmp_path / "ds")
    assert again == dataset
