"""Learning diagnostics of `student train`: the prediction's median, MAD and flat fraction in every
step record, and the warnings of a scale that drifts, keeps growing or collapses."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from train_helpers import FAST, read_metrics, runner

import student.trainer
from student.cli import app
from student.diagnostics import SCALE_FIELDS, ScaleWatch, prediction_scale
from student.metrics import board_scalars
from student.objective import Objective

# -- the statistics ------------------------------------------------------------------------------


def test_median_and_mad_pool_the_valid_pixels_of_the_batch():
    pred = torch.tensor([[1.0, 2, 3, 9, -1000, -1000], [4, 5, 6, 7, 8, 1000]]).view(2, 1, 1, 6)
    valid = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool).view_as(pred)
    scale = prediction_scale(pred.requires_grad_(), valid)
    assert set(scale) == set(SCALE_FIELDS)
    assert all(v.ndim == 0 and not v.requires_grad for v in scale.values())
    # valid pixels 1..9: median 5, |x - 5| = 4 3 2 1 0 1 2 3 4: MAD 2; neither sample is flat
    assert scale["pred_median"].item() == 5.0
    assert scale["pred_mad"].item() == 2.0
    assert scale["flat_fraction"].item() == 0.0


def test_flat_fraction_counts_the_nearly_constant_samples():
    ramp = torch.linspace(1.0, 2.0, 9)
    samples = [
        ramp,  # a real spread: not flat
        torch.full((9,), 2.0),  # constant: flat
        3.0 + 1e-5 * torch.tensor([1.0, -1] * 4 + [0]),  # MAD 1e-5 < 1e-3 * 3: flat
        torch.zeros(9),  # a dead head: flat (the floor)
        5.0 + 0.05 * torch.arange(9.0),  # MAD 0.1 = 2% of its median: not flat
        torch.full((9,), 7.0),  # no valid pixel: measured on all of them, flat
    ]
    pred = torch.stack(samples).view(6, 1, 3, 3)
    valid = torch.ones_like(pred, dtype=torch.bool)
    valid[5] = False
    assert prediction_scale(pred, valid)["flat_fraction"].item() == pytest.approx(4 / 6)


def test_board_shows_the_scale_under_pred():
    record = {"step": 3, "loss": 1.0, "pred_median": 0.5, "pred_mad": 0.1, "flat_fraction": 0.25}
    scalars = board_scalars(record)
    assert scalars["pred/median"] == 0.5 and scalars["pred/mad"] == 0.1
    assert scalars["pred/flat_fraction"] == 0.25 and scalars["loss/loss"] == 1.0
    assert not any(tag.startswith("loss/") and tag != "loss/loss" for tag in scalars), scalars


# -- the watch -----------------------------------------------------------------------------------


def _record(step: int, median: float, mad: float, flat: float = 0.0) -> dict:
    return {"step": step, "pred_median": median, "pred_mad": mad, "flat_fraction": flat}


def _watch(series) -> list[str]:
    """Every warning a watch gives over `series` of (median, mad, flat), steps 1, 2, ..."""
    watch = ScaleWatch()
    return [w for step, values in enumerate(series, 1) for w in watch.check(_record(step, *values))]


def test_a_healthy_noisy_series_gives_no_warning():
    rng = np.random.default_rng(0)
    wander = 1.0 + 0.5 * np.sin(np.arange(500) / 40)  # a slow bounded wander of the scale
    medians = wander * (1 + 0.2 * rng.standard_normal(500))
    mads = 0.3 * wander * (1 + 0.2 * rng.standard_normal(500))
    flats = rng.choice([0.0, 0.25], 500)  # now and then one flat sample of four
    assert _watch(zip(medians, mads, flats, strict=True)) == []


def test_a_jump_of_the_scale_warns_once_with_the_step_and_the_values():
    series = [(1.0, 0.3)] * 10 + [(500.0, 120.0)] * 30
    warnings = _watch(series)
    assert len(warnings) == 1, warnings
    text = warnings[0]
    assert text.startswith("step 11: the student's prediction is scale drifting")
    assert "median 500" in text and "MAD 120" in text and "at step 1: median 1, MAD 0.3" in text
    assert "optim.lr" in text and "loss.norm_sc" in text and "loss.norm_lg" in text
    assert "teacher labels" in text


def test_a_steadily_growing_scale_warns_it_keeps_growing_then_that_it_drifted():
    rng = np.random.default_rng(1)
    scale = np.cumprod(1.1 * (1 + 0.01 * rng.standard_normal(80)))
    warnings = _watch((s, 0.3 * s) for s in scale)
    drifted = 1 + int(np.argmax(scale > 100 * scale[0]))
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("step 21: ") and "keeps growing" in warnings[0]
    assert warnings[1].startswith(f"step {drifted}: ") and "100x" in warnings[1]


def test_a_flat_batch_warns_of_a_collapse_once():
    series = [(1.0, 0.3)] * 6 + [(1.0, 0.3, 0.75)] * 20
    warnings = _watch(series)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("step 7: the student's prediction is collapsing")
    assert "75% of the batch's samples are flat" in warnings[0]


def test_a_vanishing_spread_warns_of_a_collapse_once():
    mads = 0.3 * 0.8 ** np.arange(60)  # the structure fades, the median stays
    warnings = _watch((1.0, mad) for mad in mads)
    collapsed = 1 + int(np.argmax(mads < 0.01 * 0.3))
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"step {collapsed}: ") and "MAD fell below" in warnings[0]


# -- a real run ----------------------------------------------------------------------------------


def _captured_predictions(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Patch the objective to keep every micro-batch's `(pred, valid)`."""
    real, seen = Objective.__call__, []

    def keeping(self, out, batch):
        seen.append((out["pred"].detach().clone(), batch["valid"].clone()))
        return real(self, out, batch)

    monkeypatch.setattr(Objective, "__call__", keeping)
    return seen


def _train(run, dataset, init, *extra: str) -> str:
    args = ["train", "--out", str(run), "--dataset", str(dataset), "--teacher", "alpha"]
    result = runner.invoke(app, [*args, "--init", str(init), "--device", "cpu", *FAST, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _expected(pred: torch.Tensor, valid: torch.Tensor) -> tuple[float, float]:
    values = pred.numpy()[valid.numpy()]
    median = float(np.median(values))
    return median, float(np.median(np.abs(values - median)))


def test_metrics_record_the_scale_of_the_predictions_the_step_trained_on(
    train_setup, tmp_path, monkeypatch
):
    dataset, init = train_setup
    seen = _captured_predictions(monkeypatch)
    run = tmp_path / "run"
    steps = ["--steps", "2", "--batch-size", "2", "--set", "optim.accumulate=2"]
    output = _train(run, dataset, init, *steps)
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [1, 2] and len(seen) == 4
    for m, micro in zip(metrics, [seen[:2], seen[2:]], strict=True):
        expected = np.mean([_expected(pred, valid) for pred, valid in micro], axis=0)
        assert m["pred_median"] == pytest.approx(expected[0], rel=1e-3), m
        assert m["pred_mad"] == pytest.approx(expected[1], rel=1e-3), m
        assert m["pred_mad"] > 0 and m["flat_fraction"] == 0.0  # the tiny model is not flat
    status = [line for line in output.splitlines() if line.startswith("train: ")]
    assert status and not any("pred_" in line or "flat" in line for line in status), output


def test_training_warns_once_of_a_collapsed_prediction(train_setup, tmp_path, monkeypatch, caplog):
    real = student.trainer.prediction_scale

    def flat(pred, valid):
        return {**real(pred, valid), "flat_fraction": torch.tensor(1.0)}

    monkeypatch.setattr(student.trainer, "prediction_scale", flat)
    dataset, init = train_setup
    with caplog.at_level(logging.WARNING, logger="student"):
        _train(tmp_path / "run", dataset, init, "--steps", "3", "--batch-size", "1")
    warned = [r.getMessage() for r in caplog.records if "prediction is" in r.getMessage()]
    assert len(warned) == 1, warned
    assert warned[0].startswith("step 1: the student's prediction is collapsing")
    assert [m["flat_fraction"] for m in read_metrics(tmp_path / "run")] == [1.0, 1.0, 1.0]


def test_only_the_steps_recorded_measure_their_scale(train_setup, tmp_path, monkeypatch):
    """The scale costs medians over every pixel: a step that is not logged does not pay them."""
    real, calls = student.trainer.prediction_scale, []

    def counting(pred, valid):
        calls.append(1)
        return real(pred, valid)

    monkeypatch.setattr(student.trainer, "prediction_scale", counting)
    dataset, init = train_setup
    steps = ["--steps", "5", "--batch-size", "1", "--set", "log_every=2"]
    _train(tmp_path / "run", dataset, init, *steps)
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [2, 4, 5]
    assert len(calls) == 3  # steps 2, 4 and the last, one micro-batch each
