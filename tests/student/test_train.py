"""`student train`: a 2-process torchrun (gloo) run, resume equality, and a loss that goes down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dataset_helpers import prepare_small, write_fake_column, write_photos
from typer.testing import CliRunner

from labelgen.teachers import write_tiny_checkpoint
from student.cli import app

runner = CliRunner()
FAST = ["--set", "data.size=112", "--set", "data.workers=0", "--set", "log_every=1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A 5-image dataset with two fake teacher columns, and a tiny Depth Anything init."""
    root = tmp_path_factory.mktemp("train")
    dataset = prepare_small(write_photos(root / "photos"), root / "ds", shard_size=2)
    write_fake_column(dataset, "alpha")
    write_fake_column(dataset, "beta", backend="zarr")
    return dataset, write_tiny_checkpoint("depth-anything-v2", root / "init")


def _train(run: Path, dataset: Path, init: Path, *extra: str):
    args = [
        "train",
        "--out",
        str(run),
        "--dataset",
        str(dataset),
        "--teacher",
        "alpha",
        "--teacher",
        "beta",
        "--init",
        str(init),
        *FAST,
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return _metrics(run)


def _metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def test_run_directory_explains_itself(setup, tmp_path):
    dataset, init = setup
    metrics = _train(tmp_path / "run", dataset, init, "--steps", "3", "--batch-size", "2")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert {"sc", "lg", "feat", "grad", "loss", "lr", "data_time", "step_time", "teacher"} <= set(
        metrics[0]
    )
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "env.json").is_file()
    assert (run / "checkpoints" / "step_0000003.pt").is_file()
    again = runner.invoke(
        app,
        [
            "train",
            "--out",
            str(run),
            "--dataset",
            str(dataset),
            "--teacher",
            "alpha",
            "--init",
            str(init),
        ],
    )
    assert again.exit_code == 2 and "--resume" in again.output


def test_resume_reproduces_the_uninterrupted_losses(setup, tmp_path):
    dataset, init = setup
    run = tmp_path / "run"
    full = _train(
        run, dataset, init, "--steps", "4", "--batch-size", "2", "--set", "checkpoint_every=2"
    )
    (run / "checkpoints" / "step_0000004.pt").unlink()  # as if killed after step 3
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    resumed = _metrics(run)
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    for a, b in zip(full, resumed, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
        assert a["teacher"] == b["teacher"]


def test_training_on_a_small_fixed_set_lowers_the_loss(setup, tmp_path):
    dataset, init = setup
    metrics = _train(
        tmp_path / "run",
        dataset,
        init,
        "--steps",
        "30",
        "--batch-size",
        "2",
        "--set",
        "optim.lr=2e-3",
        "--set",
        "optim.warmup_steps=3",
        "--set",
        "data.augment.jitter_p=0",
        "--set",
        "data.augment.blur_p=0",
        "--set",
        "loss.lambda_feat=0",
    )
    losses = [m["loss"] for m in metrics]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, losses


def test_two_process_torchrun_gloo(setup, tmp_path):
    dataset, init = setup
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "student.cli",
        "train",
        "--out",
        str(run),
        "--dataset",
        str(dataset),
        "--teacher",
        "alpha",
        "--teacher",
        "beta",
        "--init",
        str(init),
        "--steps",
        "3",
        "--batch-size",
        "1",
        *FAST,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [m["step"] for m in _metrics(run)] == [1, 2, 3]
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
