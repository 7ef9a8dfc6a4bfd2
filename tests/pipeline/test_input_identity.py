"""Inputs are what they claim to be: `pipeline world labels --world` must be the split the dataset
was prepared from (dataset.json records it), and `pipeline verify` checks the counts dataset.json
records against the shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.world.files import WorldSettings, render_world
from pipeline.world.labels import write_world_column

runner = CliRunner()
SIZE = {"height": 64, "width": 96}


def _render(folder: Path, split: str, seed: int = 3) -> Path:
    render_world(folder, 2, WorldSettings(seed=seed, split=split, **SIZE), 1, False)
    return folder


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(dataset prepared from the train split, the train split, the test split)."""
    root = tmp_path_factory.mktemp("identity")
    train, test = _render(root / "train", "train"), _render(root / "test", "test")
    plan = PrepareSettings(tile=16, min_region=24, shard_size=1)
    return prepare([str(train)], root / "ds", plan, False, 0).out, train, test


def _copy_dataset(dataset: Path, tmp_path: Path) -> Path:
    shutil.copytree(dataset, tmp_path / "ds", ignore=shutil.ignore_patterns("labels"))
    return tmp_path / "ds"


def _dataset_json(dataset: Path) -> dict:
    return json.loads((dataset / "dataset.json").read_text())


def test_prepare_records_the_world_split_it_was_prepared_from(splits):
    dataset, train, _ = splits
    origin = _dataset_json(dataset)["world_origin"]
    assert origin["path"] == str(train.resolve())
    assert (origin["split"], origin["seed"]) == ("train", 3)
    assert {"height": origin["height"], "width": origin["width"]} == SIZE


def test_world_labels_refuse_another_split_naming_both(splits, tmp_path):
    dataset, train, test = splits
    dataset = _copy_dataset(dataset, tmp_path)
    assert sorted(p.name for p in test.glob("*.png")) == sorted(p.name for p in train.glob("*.png"))
    args = ["world", "labels", "--dataset", str(dataset), "--world", str(test), "--column", "x"]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert "split test" in line and "split train" in line and str(train.resolve()) in line
    assert not (dataset / "labels" / "x").exists()  # refused before the column was touched
    assert write_world_column(dataset, train, "x", progress=False) == ["000000", "000001"]


def test_a_dataset_without_the_record_still_refuses_other_images(splits, tmp_path):
    dataset, _, test = splits
    dataset = _copy_dataset(dataset, tmp_path)
    record = _dataset_json(dataset)
    del record["world_origin"]  # prepared before the origin was recorded
    (dataset / "dataset.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="not the image 000000 that"):
        write_world_column(dataset, test, "x", progress=False)
    assert not list((dataset / "labels" / "x").glob("0*"))  # no shard written


def test_a_record_of_another_split_in_the_folder_is_refused(splits, tmp_path):
    dataset, train, test = splits
    dataset = _copy_dataset(dataset, tmp_path)
    mixed = tmp_path / "mixed"
    shutil.copytree(train, mixed)
    shutil.copy(test / "000001.json", mixed / "000001.json")
    with pytest.raises(ValueError, match=r"000001.json: the record of image 1 of the world split"):
        write_world_column(dataset, mixed, "x", progress=False)


def test_verify_and_status_name_a_world_column_of_another_split(splits, tmp_path):
    dataset, train, _ = splits
    dataset = _copy_dataset(dataset, tmp_path)
    write_world_column(dataset, train, "exact", progress=False)
    assert runner.invoke(app, ["verify", str(dataset), "--no-progress"]).exit_code == 0
    manifest_path = dataset / "labels" / "exact" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["extra"]["world"]["split"] = "test"  # as if labelled with --world of the test split
    manifest_path.write_text(json.dumps(manifest))
    result = runner.invoke(app, ["verify", str(dataset), "--no-progress"])
    assert result.exit_code == 1
    assert "labelled from the world split test, seed 3, but the dataset" in result.output
    status = runner.invoke(app, ["status", str(dataset)])
    assert status.exit_code == 0 and "labelled from the world split test" in status.output


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_samples", 5), ("num_rejected", 1), ("num_listed", 3), ("num_skipped", 2)],
)
def test_verify_checks_the_counts_dataset_json_records(splits, tmp_path, field, value):
    dataset = _copy_dataset(splits[0], tmp_path)
    assert runner.invoke(app, ["verify", str(dataset), "--no-progress"]).exit_code == 0
    record = _dataset_json(dataset)
    record[field] = value  # a hand edit
    (dataset / "dataset.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["verify", str(dataset), "--no-progress"])
    assert result.exit_code == 1, result.output
    wrong = [line for line in result.output.splitlines() if "dataset.json: " in line]
    assert len(wrong) == 1 and f"{field} is {value} but there are" in wrong[0]


def test_evaluation_on_a_world_train_split_warns_and_records_it(splits, tmp_path):
    from evaluation.cli import app as evaluation_app
    from evaluation.datasets import open_dataset
    from labelgen.teachers import write_tiny_checkpoint

    _, train, test = splits
    assert "warning" not in open_dataset(f"world={test}").describe()
    model = f"depth-anything-v2:{write_tiny_checkpoint('depth-anything-v2', tmp_path / 'm')}"
    args = ["run", "--model", model, "--dataset", f"world={train}", "--out", str(tmp_path / "ev")]
    result = runner.invoke(evaluation_app, [*args, "--workers", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "world's train split (seed 3)" in warned[0]
    entry = json.loads((tmp_path / "ev" / "summary.json").read_text())["datasets"]["world"]
    assert "may have trained on these images" in entry["dataset"]["warning"]
