"""A metric model in `evaluation`: exact world depth scored as metres (`--alignment none`), both
alignments scored in one directory by default for a metric model (summary.json, the per-sample
files, the printed table and `evaluation report`), and a metric student given the world's focal
lengths, counted per dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from metric_helpers import metric_run
from typer.testing import CliRunner

from evaluation.cli import app
from evaluation.datasets import open_dataset
from labelgen.teachers import load_teacher, write_tiny_checkpoint
from pipeline.world.files import WorldSettings, render_world

runner = CliRunner()
KEYS = ["000000", "000001", "000002"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "test"
    render_world(out, 3, WorldSettings(seed=1, split="test", height=42, width=56), 1, False)
    return out


def _invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _metric_predictions(out: Path, world: Path, factor: float) -> Path:
    """`factor` × the world's exact depth as the predictions of a metric model."""
    folder = out / "predictions" / "world"
    folder.mkdir(parents=True)
    for key in KEYS:
        np.save(folder / f"{key}.npy", factor * np.load(world / f"{key}.depth.npy"))
    model = {"name": "metric", "spec": "x", "kind": "hf", "pred_space": "depth"}
    record = {"schema": 1, "model": {**model, "teacher": {"output_kind": "metric_depth"}}}
    (out / "predictions.json").write_text(json.dumps({**record, "pred_space": "depth"}))
    return out


def _doubled_abs_rel(world: Path) -> float:
    """AbsRel of 2 × the exact depth by hand: |min(2d, 80) - d| / d over the valid pixels under
    the world's 80 m (the protocol clips predictions to it), averaged per image then over them."""
    per_image = []
    for key in KEYS:
        depth = np.load(world / f"{key}.depth.npy").astype(np.float64)
        mask = np.load(world / f"{key}.mask.npy") & (depth > 1e-3) & (depth < 80.0)
        d = depth[mask]
        per_image.append(np.mean(np.abs(np.minimum(2 * d, 80.0) - d) / d))
    return float(np.mean(per_image))


def test_exact_world_depth_as_metres_scores_perfectly_and_doubled_is_wrong_by_one(world, tmp_path):
    for name, factor in (("exact", 1.0), ("doubled", 2.0)):
        out = _metric_predictions(tmp_path / name, world, factor)
        _invoke("score", out, "--dataset", f"world={world}", "--alignment", "none", "--workers", 0)
    exact = json.loads((tmp_path / "exact" / "summary.json").read_text())["datasets"]["world"]
    doubled = json.loads((tmp_path / "doubled" / "summary.json").read_text())["datasets"]["world"]
    assert exact["scored"] == 3 and exact["abs_rel"] == 0.0 and exact["delta1"] == 1.0
    assert doubled["abs_rel"] == pytest.approx(_doubled_abs_rel(world), abs=1e-6)
    # only pixels beyond 64 m, clipped to 80, are within a factor 1.25
    assert 0.9 < doubled["abs_rel"] <= 1.0 and doubled["delta1"] < 0.01


def test_a_metric_model_is_scored_with_both_alignments_by_default(world, tmp_path):
    out = _metric_predictions(tmp_path / "eval", world, 2.0)
    output = _invoke("score", out, "--dataset", f"world={world}", "--workers", 0)
    assert "(alignment none, scale-shift)" in output
    rows = [line.split() for line in output.splitlines() if line.startswith("world")]
    assert [r[1] for r in rows] == ["none", "scale-shift"]
    expected = _doubled_abs_rel(world)
    assert float(rows[0][4]) == pytest.approx(expected, abs=1e-4) and float(rows[1][4]) < 1e-4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["alignments"] == ["none", "scale-shift"]
    assert summary["settings"]["alignment"] == "none"
    by = summary["by_alignment"]
    assert by["none"]["world"] == summary["datasets"]["world"]
    assert by["none"]["world"]["abs_rel"] == pytest.approx(expected, abs=1e-6)
    assert by["scale-shift"]["world"]["abs_rel"] < 1e-4
    assert by["scale-shift"]["world"]["protocol"]["alignment_mode"] == "scale-shift"
    main = list(csv.DictReader((out / "per_sample.csv").open()))
    other = list(csv.DictReader((out / "per_sample.scale-shift.csv").open()))
    assert len(main) == len(other) == 3
    assert float(main[0]["abs_rel"]) > 0.9 and float(other[0]["abs_rel"]) < 1e-4
    assert json.loads((out / "per_sample.scale-shift.json").read_text())["alignment"] == (
        "scale-shift"
    )
    report = tmp_path / "report.md"
    _invoke("report", out, "--out", report)
    names = [line.split("|")[1].strip() for line in report.read_text().splitlines()[3:5]]
    assert names == ["metric · none", "metric · scale-shift"]
    # a relative model keeps the protocol's one alignment
    relative = tmp_path / "relative"
    _metric_predictions(relative, world, 2.0)
    record = json.loads((relative / "predictions.json").read_text())
    record["model"]["teacher"]["output_kind"] = "depth"
    (relative / "predictions.json").write_text(json.dumps(record))
    _invoke("score", relative, "--dataset", f"world={world}", "--workers", 0)
    summary = json.loads((relative / "summary.json").read_text())
    assert summary["settings"]["alignments"] == ["scale-shift"] and "by_alignment" not in summary
    assert not (relative / "per_sample.scale-shift.csv").exists()


def test_a_metric_student_gets_the_worlds_focal_lengths(world, tmp_path):
    init = write_tiny_checkpoint("depth-anything-v2", tmp_path / "init", seed=4)
    run = metric_run(tmp_path / "runs", init)
    out = tmp_path / "eval"
    output = _invoke(
        "run", "--model", run, "--dataset", f"world={world}", "--out", out,
        "--workers", 0, "--device", "cpu",
    )  # fmt: skip
    assert "world: focal length known for 3 of 3 images" in output
    record = json.loads((out / "predictions.json").read_text())
    assert record["datasets"]["world"]["focal"] == {"known": 3, "unknown": 0}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["alignments"] == ["none", "scale-shift"]
    assert summary["datasets"]["world"]["focal"] == {"known": 3, "unknown": 0}
    # by hand: the exported student, given each image's fx from the world's camera
    half = tmp_path / "half"  # at half the size: fx in the pixels of the resized image
    args = ["--dataset", f"world={world}", "--processing-res", 28, "--workers", 0]
    _invoke("predict", "--model", run, *args, "--out", half)
    teacher = load_teacher(f"s=depth-anything-v2:{_export(run, tmp_path / 'hf')}")
    ds = open_dataset(f"world={world}")
    for key in KEYS:
        sample = ds.load(key)
        x = torch.from_numpy(np.array(sample.rgb)).permute(2, 0, 1)[None].float() / 255
        want = teacher.predict_with_focal(x, sample.intrinsics.fx)[0][0, 0].numpy()
        got = np.load(out / "predictions" / "world" / f"{key}.npy")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        canonical = teacher.predict_with_focal(x, None)[0][0, 0].numpy()
        assert not np.allclose(got, canonical, rtol=1e-3)
        small = F.interpolate(x, size=(21, 28), mode="bilinear", antialias=True)
        want = teacher.predict_with_focal(small, sample.intrinsics.fx / 2)[0][0, 0].numpy()
        got = np.load(half / "predictions" / "world" / f"{key}.npy")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _export(run: Path, out: Path) -> Path:
    from student.export import export_run

    return export_run(run, out)
