"""`evaluation predict / score / run / report / crop-analysis` end to end on the built-in
Middlebury sample with tiny random models, and the pieces they are made of."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from evaluation.cli import app
from evaluation.crop_analysis import central_box, crop_scores
from evaluation.datasets import open_dataset
from evaluation.middlebury import load_motorcycle
from evaluation.models import load_predictor, teacher_spec_of
from evaluation.predict import PredictSettings, predict, resized_shape
from evaluation.score import ScoreSettings, score_all
from labelgen.teachers import write_tiny_checkpoint
from pipeline.toolkit.launch import Launch
from student.export import export_run

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-models")
    return {
        "dav2": write_tiny_checkpoint("depth-anything-v2", root / "dav2"),
        "dav2b": write_tiny_checkpoint("depth-anything-v2", root / "dav2b", seed=1),
        "dpt": write_tiny_checkpoint("dpt", root / "dpt"),
    }


def _invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_resized_shape_keeps_aspect_and_native_means_unchanged():
    assert resized_shape(4032, 6048, 756) == (504, 756)
    assert resized_shape(768, 1024, 640) == (480, 640)
    assert resized_shape(480, 640, None) == (480, 640)


def test_model_specs_resolve_to_teacher_hf_and_student(tiny, tmp_path):
    assert teacher_spec_of(f"depth-anything-v2:{tiny['dav2']}").name == "dav2"
    assert teacher_spec_of(f"mine=dpt:{tiny['dpt']}").name == "mine"
    assert teacher_spec_of(str(tiny["dav2"])) is None
    teacher = load_predictor(f"depth-anything-v2:{tiny['dav2']}")
    hf = load_predictor(str(tiny["dav2"]))
    dpt = load_predictor(str(tiny["dpt"]))
    assert (teacher.kind, hf.kind, dpt.kind) == ("teacher", "hf", "hf")
    assert dpt.teacher.adapter == "dpt" and dpt.pred_space == "disparity"
    x = torch.rand(1, 3, 70, 98)
    assert torch.equal(teacher.predict(x), hf.predict(x))


def _fake_run(init: Path, run: Path) -> Path:
    """A run directory as `student train` leaves it, with perturbed weights."""
    from student.checkpoint import save_checkpoint
    from student.model import load_student
    from student.rundir import RunDir

    student = load_student(init, frozen_encoder=False)
    with torch.no_grad():
        for p in student.model.head.parameters():
            p.add_(0.05)
    RunDir(run).write_config({"init": str(init)})
    save_checkpoint(run, 3, {"model": student.model.state_dict()})
    return run


def test_a_run_directory_is_scored_as_its_export(tiny, tmp_path):
    run = _fake_run(tiny["dav2"], tmp_path / "run")
    student = load_predictor(str(run))
    assert student.kind == "student" and student.describe()["checkpoint"].endswith("3.pt")
    export_run(run, tmp_path / "hf")
    x = torch.rand(2, 3, 56, 84)
    assert torch.equal(student.predict(x), load_predictor(str(tmp_path / "hf")).predict(x))
    assert not torch.equal(student.predict(x), load_predictor(str(tiny["dav2"])).predict(x))


def test_one_checkpoint_of_a_run_is_scored_as_that_step(tiny, tmp_path):
    """`--model RUN/checkpoints/step_N.pt` (a learning curve's point), not the newest."""
    from student.checkpoint import load_checkpoint, save_checkpoint

    run = _fake_run(tiny["dav2"], tmp_path / "run")
    state = load_checkpoint(run / "checkpoints" / "step_0000003.pt")
    with torch.no_grad():
        state["model"] = {k: v + 0.05 if "head" in k else v for k, v in state["model"].items()}
    save_checkpoint(run, 6, {"model": state["model"]})
    x = torch.rand(1, 3, 56, 84)
    first = load_predictor(str(run / "checkpoints" / "step_0000003.pt"))
    assert first.describe()["checkpoint"].endswith("step_0000003.pt")
    export_run(run, tmp_path / "hf3", step=3)
    assert torch.equal(first.predict(x), load_predictor(str(tmp_path / "hf3")).predict(x))
    assert not torch.equal(first.predict(x), load_predictor(str(run)).predict(x))  # step 6


def test_unknown_model_names_the_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="teacher spec ADAPTER:SOURCE") as hub:
        load_predictor("no-such-org/no-such-model")  # a hub id that cannot be loaded offline
    assert "\n" not in str(hub.value)
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or directory"):
        load_predictor(str(tmp_path / "nowhere"))  # a mistyped local path is not a hub id
    from student.rundir import RunDir

    RunDir(tmp_path / "run").write_config({"init": "x"})  # started, no checkpoint yet
    with pytest.raises(FileNotFoundError, match="without a checkpoint yet"):
        load_predictor(str(tmp_path / "run"))


def test_run_writes_predictions_summary_and_per_sample_rows(tiny, tmp_path):
    out = tmp_path / "eval"
    output = _invoke(
        "run", "--model", f"depth-anything-v2:{tiny['dav2']}", "--dataset", "middlebury",
        "--out", out, "--workers", "0", "--device", "cpu",
    )  # fmt: skip
    assert "middlebury" in output
    pred = np.load(out / "predictions" / "middlebury" / "motorcycle.npy")
    assert pred.shape == (500, 741) and pred.dtype == np.float32
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["datasets"]["middlebury"]
    assert summary["model"]["name"] == "dav2" and summary["model"]["pred_space"] == "disparity"
    assert entry["samples"] == entry["scored"] == 1 and 0 < entry["abs_rel"] < 1
    assert entry["protocol"]["pred_space"] == "disparity"
    assert entry["protocol"]["score_space"] == "depth"
    assert entry["processing_res"] == "native" and summary["versions"]["torch"]
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    assert len(rows) == 1 and rows[0]["key"] == "motorcycle"
    assert float(rows[0]["abs_rel"]) == pytest.approx(entry["abs_rel"])


def test_predict_resumes_and_refuses_another_model(tiny, tmp_path):
    ds = [open_dataset("middlebury")]
    settings, launch = PredictSettings(), Launch(device="cpu", workers=0)
    out = tmp_path / "eval"
    first = predict(load_predictor(f"depth-anything-v2:{tiny['dav2']}"), ds, out, settings, launch)
    path = out / "predictions" / "middlebury" / "motorcycle.npy"
    mtime = path.stat().st_mtime_ns
    again = predict(load_predictor(f"depth-anything-v2:{tiny['dav2']}"), ds, out, settings, launch)
    assert first["datasets"]["middlebury"]["predicted_now"] == 1
    assert again["datasets"]["middlebury"]["predicted_now"] == 0
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="use another --out"):
        predict(load_predictor(f"depth-anything-v2:{tiny['dav2b']}"), ds, out, settings, launch)


def _write_prediction(out: Path, pred: np.ndarray) -> None:
    path = out / "predictions" / "middlebury" / "motorcycle.npy"
    path.parent.mkdir(parents=True)
    np.save(path, pred.astype(np.float32))


def test_external_perfect_disparity_scores_zero_and_a_ramp_does_not(tmp_path):
    _, depth = load_motorcycle()
    perfect = np.where(np.isfinite(depth), 1.0 / depth, 0.0)
    _write_prediction(tmp_path / "perfect", 3.0 * perfect + 0.5)
    _invoke("score", tmp_path / "perfect", "--dataset", "middlebury", "--pred-space", "disparity")
    entry = json.loads((tmp_path / "perfect" / "summary.json").read_text())["datasets"]
    assert entry["middlebury"]["abs_rel"] < 1e-6 and entry["middlebury"]["delta1"] == 1.0
    ramp = np.tile(np.linspace(1.0, 2.0, depth.shape[1]), (depth.shape[0], 1))
    _write_prediction(tmp_path / "ramp", ramp)
    settings = ScoreSettings(pred_space="disparity", name="ramp")
    summary = score_all(
        tmp_path / "ramp", [open_dataset("middlebury")], settings, Launch(workers=0)
    )
    assert summary["model"]["name"] == "ramp"
    assert summary["datasets"]["middlebury"]["abs_rel"] > 0.05


def test_score_names_missing_and_misshapen_prediction_files(tmp_path):
    result = runner.invoke(app, ["score", str(tmp_path), "--dataset", "middlebury"])
    assert result.exit_code == 2 and "--pred-space" in result.output
    args = ["score", str(tmp_path), "--dataset", "middlebury", "--pred-space", "depth"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "motorcycle.npy" in result.output
    _write_prediction(tmp_path, np.ones((50, 50)))
    result = runner.invoke(app, [*args, "--workers", "0"])
    assert result.exit_code == 2 and "aspect ratio" in result.output and "500x741" in result.output


def test_a_prediction_at_the_inference_size_is_resized_to_the_ground_truth(tmp_path):
    from evaluation.protocol import score
    from evaluation.score import load_prediction, resize_bilinear

    _, depth = load_motorcycle()
    small = np.tile(np.linspace(1.0, 2.0, 370, dtype=np.float32), (250, 1))
    _write_prediction(tmp_path, small)
    path = tmp_path / "predictions" / "middlebury" / "motorcycle.npy"
    full = load_prediction(path, depth.shape)
    assert full.shape == depth.shape
    np.testing.assert_array_equal(full, resize_bilinear(small, depth.shape))
    settings = ScoreSettings(pred_space="disparity")
    entry = score_all(tmp_path, [open_dataset("middlebury")], settings, Launch(workers=0))
    entry = entry["datasets"]["middlebury"]
    assert entry["abs_rel"] == pytest.approx(
        score(full, depth, "middlebury", "disparity")["abs_rel"]
    )


def test_figures_and_report_over_two_methods(tiny, tmp_path):
    for name in ("dav2", "dpt"):
        spec = f"depth-anything-v2:{tiny['dav2']}" if name == "dav2" else f"dpt:{tiny['dpt']}"
        _invoke(
            "run", "--model", spec, "--dataset", "middlebury", "--out", tmp_path / name,
            "--workers", "0", "--figures",
        )  # fmt: skip
    assert (tmp_path / "dav2" / "figures" / "middlebury" / "motorcycle.png").is_file()
    assert (tmp_path / "dav2" / "figures" / "middlebury_scatter.png").is_file()
    assert (tmp_path / "dav2" / "figures" / "middlebury" / "motorcycle_edges.png").is_file()
    report = tmp_path / "report.md"
    output = _invoke("report", tmp_path / "dav2", tmp_path / "dpt", "--out", report)
    assert "dav2" in output and "dpt" in output and "**" in report.read_text()
    assert "BF1↑" in report.read_text()  # Middlebury's ground truth has sharp edges
    assert report.with_suffix(".csv").is_file() and report.with_suffix(".json").is_file()


def test_crop_scores_local_alignment_is_exact_where_global_is_not():
    h, w = 40, 60
    gt = np.linspace(1.0, 5.0, h * w).reshape(h, w)
    pred = 1.0 / gt
    top, bottom, left, right = central_box(h, w)
    assert (bottom - top, right - left) == (20, 30) and (top, left) == (10, 15)
    pred[top:bottom, left:right] = 4.0 * pred[top:bottom, left:right] + 0.3
    result = crop_scores(pred, gt, "middlebury", "disparity")
    assert result["local"]["abs_rel"] < 1e-9 < 1e-3 < result["global"]["abs_rel"]
    assert result["crop_pixels"] == 20 * 30 and result["nonfinite_pixels"] == 0
    pred[top, left] = np.nan
    assert crop_scores(pred, gt, "middlebury", "disparity")["nonfinite_pixels"] == 1
    empty = crop_scores(pred, np.full((h, w), np.inf), "middlebury", "disparity")
    assert empty["status"] == "empty_mask"


def test_crop_analysis_command(tiny, tmp_path):
    output = _invoke(
        "crop-analysis", "--model", f"depth-anything-v2:{tiny['dav2']}", "--dataset",
        "middlebury", "--out", tmp_path, "--workers", "0",
    )  # fmt: skip
    result = json.loads((tmp_path / "crop_analysis.json").read_text())
    entry = result["datasets"]["middlebury"]
    assert entry["scored"] == 1 and "local better" in output
    assert entry["local"]["abs_rel"] > 0 and entry["global"]["abs_rel"] > 0
    assert entry["local_better_fraction"] in (0.0, 1.0)


def test_run_on_a_synthetic_diode_tar_with_worker_processes(tiny, tmp_path):
    from eval_layouts import make_layout

    layout = make_layout("diode", tmp_path / "data", n=3, as_tar=True, top="diode_val")
    out = tmp_path / "eval"
    _invoke(
        "run", "--model", str(tiny["dav2"]), "--dataset", f"diode={layout.path}",
        "--out", out, "--workers", "2", "--batch-size", "2", "--device", "cpu",
    )  # fmt: skip
    entry = json.loads((out / "summary.json").read_text())["datasets"]["diode"]
    assert entry["samples"] == entry["scored"] == 3
    assert entry["processing_res"] == 640  # DIODE's protocol inference size
    assert entry["protocol"]["dataset"]["clip"] == [0.6, 350.0]
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    assert sorted(r["key"] for r in rows) == sorted(s.key for s in layout.samples)
    for sample in layout.samples:  # stored at the inference size: long side 640
        pred = np.load(out / "predictions" / "diode" / f"{sample.key}.npy")
        assert pred.shape == resized_shape(*sample.depth.shape, 640)


def test_check_data_prints_counts(tmp_path):
    from eval_layouts import make_layout

    layout = make_layout("scannet", tmp_path, n=2)
    output = _invoke("check-data", f"scannet={layout.path}", "--full")
    assert "entries: 2" in output and "expected: 800" in output
    result = runner.invoke(app, ["check-data", f"scannet={tmp_path / 'missing'}"])
    assert result.exit_code == 2 and "missing" in result.output


KILL_AFTER_TWO = """
import os, signal, sys
import evaluation.predict as predict
real, saved = predict.save_prediction, []
def save(path, pred):
    real(path, pred)
    saved.append(path)
    if len(saved) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
predict.save_prediction = save
from evaluation.cli import app
app(sys.argv[1:], prog_name="evaluation")
"""


def test_predict_killed_then_rerun_matches_an_uninterrupted_run(tiny, tmp_path):
    import subprocess
    import sys

    from eval_layouts import make_layout

    layout = make_layout("eth3d", tmp_path / "data", n=5)
    args = ["predict", "--model", str(tiny["dav2"]), "--dataset", f"eth3d={layout.path}"]
    args += ["--workers", "0", "--device", "cpu"]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_TWO, *args, "--out", str(tmp_path / "killed")],
        capture_output=True,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    files = sorted((tmp_path / "killed" / "predictions").rglob("*.npy"))
    assert len(files) == 2
    other = [*args[:2], f"depth-anything-v2:{tiny['dav2b']}", *args[3:], "--out"]
    refused = runner.invoke(app, [*other, str(tmp_path / "killed")])
    assert refused.exit_code == 2 and "use another --out" in refused.output
    _invoke(*args, "--out", tmp_path / "killed")
    _invoke(*args, "--out", tmp_path / "whole")
    record = json.loads((tmp_path / "killed" / "predictions.json").read_text())
    assert record["datasets"]["eth3d"]["predicted_now"] == 3
    for sample in layout.samples:
        rel = Path("predictions") / "eth3d" / f"{sample.key}.npy"
        assert (tmp_path / "killed" / rel).read_bytes() == (tmp_path / "whole" / rel).read_bytes()
    assert not [p for p in (tmp_path / "killed").rglob("*") if p.name.endswith(".tmp")]


def test_a_depth_teacher_is_fitted_in_depth_space(tmp_path):
    ckpt = write_tiny_checkpoint("marigold", tmp_path / "marigold")
    spec = f"marigold:{ckpt},steps=1"
    predictor = load_predictor(spec)
    assert predictor.pred_space == "depth" and predictor.kind == "teacher"
    _invoke("run", "--model", spec, "--dataset", "middlebury", "--out", tmp_path / "eval",
            "--workers", "0")  # fmt: skip
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    entry = summary["datasets"]["middlebury"]
    assert entry["protocol"]["pred_space"] == "depth" and entry["scored"] == 1
    assert entry["protocol"]["alignment"] == "least squares scale and shift in depth space"
