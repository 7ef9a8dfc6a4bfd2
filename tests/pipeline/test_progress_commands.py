"""Every long job takes the shared `--no-progress` and, when its output is not a terminal (a
pipe, a log), draws no bar: no carriage return, whether progress is on (plain lines) or off
(nothing). Through the commands a user runs: world render and labels, labelgen run, student
train and predict, evaluation run, predict and crop-analysis (prepare, verify and score:
tests/pipeline/test_progress.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app as pipeline_app

runner = CliRunner()


def _quiet(app, args: list[str]) -> None:
    """`args` with `--no-progress`: no progress at all, and no bar of a library either."""
    quiet = runner.invoke(app, [*args, "--no-progress"])
    assert quiet.exit_code == 0, quiet.output
    assert "\r" not in quiet.output and "(100%)" not in quiet.output, quiet.output


def _shown(app, args: list[str], progress_line: str) -> None:
    """`args` with progress on, in a pipe: progress lines, no bar."""
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "\r" not in shown.output and progress_line in shown.output, shown.output


def test_world_render_and_labels(tmp_path):
    world, dataset = tmp_path / "world", tmp_path / "ds"
    render = ["world", "render", "--out", str(world), "--height", "120", "--width", "180"]
    render += ["--workers", "1"]
    _quiet(pipeline_app, [*render, "--images", "2"])
    _shown(pipeline_app, [*render, "--images", "3"], "world train: 1/1 img (100%)")
    prepare = ["prepare", "--images", str(world), "--out", str(dataset), "--no-progress"]
    prepare += ["--tile", "48", "--min-region", "72", "--shard-size", "2"]
    prepared = runner.invoke(pipeline_app, prepare)
    assert prepared.exit_code == 0, prepared.output
    labels = ["world", "labels", "--dataset", str(dataset), "--world", str(world)]
    _quiet(pipeline_app, [*labels, "--column", "quiet"])
    _shown(pipeline_app, [*labels, "--column", "shown"], "world labels shown: 2/2 shard (100%)")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path]:
    """A one-image dataset, a tiny teacher checkpoint, and its column `t`."""
    from dataset_helpers import prepare_small, scene_image

    from labelgen.cli import app as labelgen_app
    from labelgen.teachers import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("progress")
    (root / "photos").mkdir()
    Image.fromarray(scene_image(120, 160, 0)).save(root / "photos" / "p.png")
    ckpt = write_tiny_checkpoint("depth-anything-v2", root / "ckpt")
    dataset = prepare_small(root / "photos", root / "ds", shard_size=1)
    args = ["run", "--dataset", str(dataset), "--teacher", f"t=depth-anything-v2:{ckpt}"]
    _quiet(labelgen_app, [*args, "--device", "cpu", "--workers", "0"])
    _shown(labelgen_app, [*args, "--teacher", f"u=depth-anything-v2:{ckpt}", "--workers", "0"],
           "u [rank 0/1 (single)]: 1/1 img (100%)")  # fmt: skip
    return dataset, ckpt


def test_labelgen_run_and_student_train(labelled, tmp_path):
    from student.cli import app as student_app

    dataset, ckpt = labelled
    train = ["train", "--dataset", str(dataset), "--teacher", "t", "--init", str(ckpt)]
    train += ["--steps", "2", "--batch-size", "1", "--device", "cpu", "--set", "data.size=56"]
    train += ["--set", "data.workers=0", "--set", "log_every=1"]
    _quiet(student_app, [*train, "--out", str(tmp_path / "quiet")])
    _shown(student_app, [*train, "--out", str(tmp_path / "shown")], "train: 2/2 steps (100%)")
    photo = dataset.parent / "photos" / "p.png"
    predict = ["predict", str(tmp_path / "shown"), str(photo), "--device", "cpu"]
    _quiet(student_app, [*predict, "--out", str(tmp_path / "pq")])
    _shown(student_app, [*predict, "--out", str(tmp_path / "ps")], "predict: 1/1 images (100%)")
    assert (tmp_path / "ps" / "p.npy").is_file()


def test_evaluation_run_and_predict(labelled, tmp_path):
    from evaluation.cli import app as evaluation_app

    _, ckpt = labelled
    common = ["--model", str(ckpt), "--dataset", "middlebury", "--device", "cpu"]
    common += ["--workers", "0"]
    _quiet(evaluation_app, ["predict", *common, "--out", str(tmp_path / "p")])
    _quiet(evaluation_app, ["run", *common, "--out", str(tmp_path / "r")])
    _quiet(evaluation_app, ["crop-analysis", *common, "--out", str(tmp_path / "c")])
    shown = ["run", *common, "--out", str(tmp_path / "shown")]
    _shown(evaluation_app, shown, "predict middlebury: 1/1 img (100%)")
