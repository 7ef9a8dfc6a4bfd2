"""`labelgen estimate` projects disk and device time from a small sample, writing nothing."""

from __future__ import annotations

from dataset_helpers import prepare_small
from typer.testing import CliRunner

from labelgen.cli import app
from labelgen.teachers import write_tiny_checkpoint


def test_estimate_prints_a_projection_and_leaves_the_dataset_alone(photo_folder, tmp_path):
    dataset = prepare_small(photo_folder, tmp_path / "ds", shard_size=3)
    ckpt = write_tiny_checkpoint("depth-anything-v2", tmp_path / "da")
    before = sorted(p.relative_to(dataset) for p in dataset.rglob("*"))
    result = CliRunner().invoke(
        app,
        [
            "estimate",
            "--dataset",
            str(dataset),
            "--teacher",
            f"da=depth-anything-v2:{ckpt}",
            "--sample",
            "2",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("da "))
    views_per_image = float(row.split()[1])
    assert views_per_image > 3  # full + at least one region view and one tile per region
    assert "projected for 5 images on cpu" in result.output
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*")) == before


def test_estimate_without_teacher_is_a_clear_error(photo_folder, tmp_path):
    dataset = prepare_small(photo_folder, tmp_path / "ds")
    result = CliRunner().invoke(app, ["estimate", "--dataset", str(dataset)])
    assert result.exit_code == 2 and "no teacher given" in result.output
