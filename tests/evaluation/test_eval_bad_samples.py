"""A benchmark file that cannot be decoded: one line naming it (with worker processes too, whose
errors torch would wrap in a traceback), or with `--skip-bad-samples` the sample is skipped and
counted in summary.json, per_sample.csv and the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from eval_layouts import make_layout
from typer.testing import CliRunner

from evaluation.cli import app
from labelgen.teachers import write_tiny_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_checkpoint("depth-anything-v2", tmp_path_factory.mktemp("m") / "dav2")


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _one_line_error(result, path: Path) -> str:
    assert result.exit_code == 2, result.output
    errors = [
        line.split("error: ", 1)[1] for line in result.output.splitlines() if "error: " in line
    ]
    assert len(errors) == 1 and errors[0].startswith(str(path)), result.output
    assert "Traceback" not in result.output and "worker" not in result.output
    assert "--skip-bad-samples" in errors[0]
    return errors[0]


def _summary(out: Path, name: str) -> dict:
    return json.loads((out / "summary.json").read_text())["datasets"][name]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_an_undecodable_image_stops_with_one_line_or_is_skipped_and_counted(
    model, tmp_path, workers
):
    layout = make_layout("scannet", tmp_path / "data", n=3)
    bad = layout.samples[1]
    jpeg = _truncate(layout.path / bad.files["rgb"])
    args = ["run", "--model", str(model), "--dataset", layout.arg(), "--device", "cpu"]
    args += ["--workers", workers, "--out", str(tmp_path / "eval")]
    error = _one_line_error(runner.invoke(app, args), jpeg)
    assert "cannot decode" in error
    result = runner.invoke(app, [*args, "--skip-bad-samples"])
    assert result.exit_code == 0, result.output
    assert f"skipped unreadable sample {bad.key}" in result.output
    assert "1 unreadable, skipped" in result.output
    entry = _summary(tmp_path / "eval", "scannet")
    assert (entry["samples"], entry["scored"], entry["unreadable"]) == (3, 2, 1)
    rows = list(csv.DictReader((tmp_path / "eval" / "per_sample.csv").open()))
    assert [r["status"] for r in rows if r["key"] == bad.key] == ["unreadable"]
    record = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    (skipped,) = record["datasets"]["scannet"]["unreadable"]
    assert skipped["key"] == bad.key and str(jpeg) in skipped["error"]
    # score alone, without the option, names what predict could not read
    score = ["score", str(tmp_path / "eval"), "--dataset", layout.arg(), "--workers", workers]
    result = runner.invoke(app, score)
    assert result.exit_code == 2 and "could not read it" in result.output
    assert str(jpeg) in result.output and "--skip-bad-samples" in result.output
    report = tmp_path / "report.md"
    result = runner.invoke(app, ["report", str(tmp_path / "eval"), "--out", str(report)])
    assert result.exit_code == 0 and "unreadable 1" in report.read_text()


@pytest.mark.parametrize("workers", ["0", "2"])
def test_an_undecodable_ground_truth_stops_scoring_with_one_line_or_is_counted(tmp_path, workers):
    layout = make_layout("nyu", tmp_path / "data", n=3)
    out = tmp_path / "eval"
    for sample in layout.samples:
        path = out / "predictions" / "nyu" / f"{sample.key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.random.default_rng(0).random(sample.depth.shape, dtype=np.float32))
    bad = layout.samples[0]
    png = _truncate(layout.path / bad.files["depth"])
    args = ["score", str(out), "--dataset", layout.arg(), "--pred-space", "disparity"]
    args += ["--workers", workers, "--device", "cpu"]
    _one_line_error(runner.invoke(app, args), png)
    result = runner.invoke(app, [*args, "--skip-bad-samples"])
    assert result.exit_code == 0, result.output
    entry = _summary(out, "nyu")
    assert (entry["samples"], entry["scored"], entry["unreadable"]) == (3, 2, 1)
    rows = json.loads((out / "per_sample.json").read_text())["samples"]
    (row,) = [r for r in rows if r["status"] == "unreadable"]
    assert row["key"] == bad.key and str(png) in row["error"]


def test_a_bad_prediction_file_is_one_line_with_workers_and_never_skipped(tmp_path):
    layout = make_layout("nyu", tmp_path / "data", n=3)
    out = tmp_path / "eval"
    for sample in layout.samples:
        path = out / "predictions" / "nyu" / f"{sample.key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.ones((10, 50), np.float32))  # not the image's aspect ratio
    args = ["score", str(out), "--dataset", layout.arg(), "--pred-space", "disparity"]
    result = runner.invoke(app, [*args, "--workers", "2", "--skip-bad-samples"])
    assert result.exit_code == 2 and "aspect ratio" in result.output
    assert "Traceback" not in result.output and "worker" not in result.output
