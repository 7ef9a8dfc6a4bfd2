"""`--alignment scale-shift|scale|none`: what each fit does to exact, doubled and shifted
predictions, the numpy and torch scorers agreeing on each, the refusal of `none` for a relative
model, and the report's row per alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from evaluation.alignment import ALIGNMENTS, check_alignment
from evaluation.cli import app
from evaluation.device_score import score_tensor
from evaluation.middlebury import load_motorcycle
from evaluation.protocol import protocol_description, score

runner = CliRunner()
METRIC_KEYS = ("abs_rel", "delta1", "delta2", "delta3", "rmse")


def _scene(shape=(480, 640), seed=0):
    """Metric ground truth in 0.5..4.5 m (doubled it stays inside NYUv2's 10 m) with holes."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 4.5, shape).astype(np.float32)
    gt[rng.random(shape) < 0.1] = 0.0
    return gt


def test_exact_metric_depth_scores_perfectly_without_a_fit():
    gt = _scene()
    result = score(gt.copy(), gt, "nyu", "depth", alignment="none")
    assert result["status"] == "ok" and result["abs_rel"] == 0.0 and result["delta1"] == 1.0


def test_a_doubled_prediction_is_wrong_by_one_unaligned_and_exact_with_any_fit():
    gt = _scene()
    doubled = 2.0 * gt
    none = score(doubled, gt, "nyu", "depth", alignment="none")
    assert none["abs_rel"] == 1.0 and none["delta1"] == 0.0
    for alignment in ("scale", "scale-shift"):
        fitted = score(doubled, gt, "nyu", "depth", alignment=alignment)
        assert fitted["abs_rel"] < 1e-9 and fitted["delta1"] == 1.0, alignment


def test_a_shifted_prediction_is_fixed_by_the_shift_only():
    gt = _scene()
    shifted = gt + 0.5
    assert score(shifted, gt, "nyu", "depth", alignment="scale-shift")["abs_rel"] < 1e-6
    assert score(shifted, gt, "nyu", "depth", alignment="scale")["abs_rel"] > 0.02
    assert score(shifted, gt, "nyu", "depth", alignment="none")["abs_rel"] > 0.1


def test_scale_fits_disparity_in_disparity_space():
    """A disparity prediction is scaled against 1/GT: a scaled disparity is exact, a shifted one
    is not (the scale-shift default fixes both)."""
    gt = _scene()
    disparity = np.where(gt > 0, 3.0 / np.maximum(gt, 1e-6), 0.0).astype(np.float32)
    assert score(disparity, gt, "nyu", "disparity", alignment="scale")["abs_rel"] < 1e-6
    shifted = disparity + 0.2
    assert score(shifted, gt, "nyu", "disparity", alignment="scale")["abs_rel"] > 0.02
    assert score(shifted, gt, "nyu", "disparity")["abs_rel"] < 1e-6


def _noisy(dataset: str, pred_space: str):
    shape = (352, 1216) if dataset == "kitti" else (480, 640)
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.3, 60.0, shape).astype(np.float32)
    gt[rng.random(shape) < 0.1] = 0.0
    gt[rng.random(shape) < 0.03] = np.inf
    finite = np.where(np.isfinite(gt) & (gt > 0), gt, 5.0)
    noise = rng.uniform(0.8, 1.2, shape)
    pred = (finite * noise + 0.3) if pred_space == "depth" else (1.0 / finite + 0.05) * noise
    pred = pred.astype(np.float32)
    pred[200:202, 300:309] = np.nan  # left out of every fit, scored as the worst depth
    pred[205:207, 300:304] = -0.1
    return gt, pred


@pytest.mark.parametrize("dataset", ["nyu", "kitti", "eth3d", "middlebury"])
@pytest.mark.parametrize(
    ("pred_space", "alignment"),
    [("depth", a) for a in ALIGNMENTS] + [("disparity", "scale"), ("disparity", "scale-shift")],
)
def test_device_scorer_equals_numpy_scorer_for_each_alignment(dataset, pred_space, alignment):
    gt, pred = _noisy(dataset, pred_space)
    want = score(pred, gt, dataset, pred_space, alignment=alignment)
    got = score_tensor(
        torch.from_numpy(pred), torch.from_numpy(gt), dataset, pred_space, alignment=alignment
    )
    assert got["status"] == want["status"] and got["valid_pixels"] == want["valid_pixels"]
    assert got["nonfinite_pixels"] == want["nonfinite_pixels"] > 0
    for name in METRIC_KEYS:
        assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), name
    if dataset == "middlebury":
        assert got["boundary_f1"] == pytest.approx(want["boundary_f1"], rel=1e-9)
    others = [a for a in ALIGNMENTS if a != alignment and (pred_space, a) != ("disparity", "none")]
    assert all(score(pred, gt, dataset, pred_space, alignment=a) != want for a in others)


def test_none_is_refused_for_relative_outputs_in_one_line():
    gt = _scene()
    for scorer, args in ((score, (gt, gt)), (score_tensor, (torch.from_numpy(gt),) * 2)):
        with pytest.raises(ValueError, match="outputs relative disparity") as err:
            scorer(*args, "nyu", "disparity", alignment="none")
        assert "scale-shift" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"model 'marigold' outputs affine-invariant"):
        check_alignment("none", "depth", "depth", "marigold")
    check_alignment("none", "depth", "metric_depth", "metric3d")
    check_alignment("none", "depth")  # predictions made elsewhere: the user says depth
    with pytest.raises(ValueError, match="not one of scale-shift, scale, none"):
        score(gt, gt, "nyu", "depth", alignment="median")


def test_recorded_alignment_string_keeps_the_default_protocol_words():
    default = protocol_description("nyu", "disparity")
    assert default["alignment"] == "least squares scale and shift in disparity space"
    assert default["alignment_mode"] == "scale-shift"
    assert protocol_description("nyu", "depth", alignment="scale")["alignment"] == (
        "least squares scale (no shift) in depth space"
    )
    assert protocol_description("nyu", "depth", alignment="none")["alignment_mode"] == "none"


# ------------------------------------------------------------------------- commands


def _write_metric_predictions(out: Path, factor: float, kind: str = "metric_depth") -> None:
    """Middlebury predictions of a metric model (`factor` × the true depth) and the
    predictions.json `evaluation predict` would write for a model of output kind `kind`."""
    _, depth = load_motorcycle()
    path = out / "predictions" / "middlebury" / "motorcycle.npy"
    path.parent.mkdir(parents=True)
    np.save(path, np.where(np.isfinite(depth), factor * depth, 0.0).astype(np.float32))
    model = {"name": "metric", "spec": "x", "kind": "hf", "pred_space": "depth"}
    record = {"schema": 1, "model": {**model, "teacher": {"output_kind": kind}}, "datasets": {}}
    record["pred_space"] = "depth"
    (out / "predictions.json").write_text(json.dumps(record))


def _score(out: Path, *extra: str):
    args = ["score", str(out), "--dataset", "middlebury", "--workers", "0", "--device", "cpu"]
    return runner.invoke(app, [*args, *extra])


def test_score_records_the_alignment_and_a_report_shows_both(tmp_path):
    for alignment in ("none", "scale-shift"):
        _write_metric_predictions(tmp_path / alignment, 2.0)
        result = _score(tmp_path / alignment, "--alignment", alignment)
        assert result.exit_code == 0, result.output
        assert f"(alignment {alignment})" in result.output
    none = json.loads((tmp_path / "none" / "summary.json").read_text())
    entry = none["datasets"]["middlebury"]
    assert none["settings"]["alignment"] == "none"
    assert entry["protocol"]["alignment_mode"] == "none"
    assert entry["protocol"]["alignment"].startswith("none: ")
    assert entry["abs_rel"] == pytest.approx(1.0, abs=1e-6) and entry["delta1"] == 0.0
    per_sample = json.loads((tmp_path / "none" / "per_sample.json").read_text())
    assert per_sample["alignment"] == "none"
    fitted = json.loads((tmp_path / "scale-shift" / "summary.json").read_text())
    assert fitted["datasets"]["middlebury"]["abs_rel"] < 1e-6
    report = tmp_path / "report.md"
    args = ["report", str(tmp_path / "none"), str(tmp_path / "scale-shift"), "--out", str(report)]
    assert runner.invoke(app, args).exit_code == 0
    rows = {line.split("|")[1].strip(): line for line in report.read_text().splitlines()[3:5]}
    assert set(rows) == {"metric · none", "metric · scale-shift"}
    assert "1.000" in rows["metric · none"] and "0.000" in rows["metric · scale-shift"]
    assert "`none`: no fit" in report.read_text()
    table = json.loads(report.with_suffix(".json").read_text())
    assert table["alignments"] == ["none", "scale-shift"]


def test_score_refuses_none_for_a_relative_model(tmp_path):
    _write_metric_predictions(tmp_path, 1.0, kind="depth")
    result = _score(tmp_path, "--alignment", "none")
    assert result.exit_code == 2 and not (tmp_path / "summary.json").exists()
    assert result.output.count("\n") == 1 and "output kind 'depth'" in result.output
    assert "use --alignment scale-shift" in result.output
    result = _score(tmp_path, "--alignment", "affine")
    assert result.exit_code == 2 and "not one of scale-shift, scale, none" in result.output


def test_run_refuses_none_for_a_disparity_model_before_predicting(tmp_path):
    from labelgen.teachers import write_tiny_checkpoint

    model = write_tiny_checkpoint("depth-anything-v2", tmp_path / "dav2")
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        ["run", "--model", f"depth-anything-v2:{model}", "--dataset", "middlebury"]
        + ["--out", str(out), "--workers", "0", "--device", "cpu", "--alignment", "none"],
    )
    assert result.exit_code == 2 and result.output.startswith("error: --alignment none")
    assert "model 'dav2' outputs relative disparity (output kind 'disparity')" in result.output
    assert not (out / "predictions").exists()
