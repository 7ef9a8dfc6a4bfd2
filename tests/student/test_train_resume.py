"""`student train --resume`: equal losses, TensorBoard once per step, and the steps skipped on a
non-finite loss or gradient."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from train_helpers import FAST, read_metrics, runner, train

from student.cli import app


def test_resume_reproduces_the_uninterrupted_losses(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    full = train(
        run, dataset, init, "--steps", "4", "--batch-size", "2", "--set", "checkpoint_every=2"
    )
    (run / "checkpoints" / "step_0000004.pt").unlink()  # as if killed after step 3
    config = (run / "config.yaml").read_text()
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    assert (run / "config.yaml").read_text() == config  # read back as it was written
    resumed = read_metrics(run)
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    env = json.loads((run / "env.json").read_text())
    assert "torch" in json.dumps(env) and [r["step"] for r in env["resumes"]] == [2]
    for a, b in zip(full, resumed, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
        assert a["teacher"] == b["teacher"]


def _board_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the run: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_tensorboard_holds_the_metrics_once_per_step_across_a_resume(train_setup, tmp_path):
    pytest.importorskip("tensorboard")
    dataset, init = train_setup
    run = tmp_path / "run"
    board = ["--set", "tensorboard=true", "--set", "checkpoint_every=2"]
    train(run, dataset, init, "--steps", "4", "--batch-size", "2", *board)
    (run / "checkpoints" / "step_0000004.pt").unlink()  # as if killed after step 3
    (run / "checkpoints" / "step_0000003.pt").unlink(missing_ok=True)
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    assert len(list((run / "tensorboard").iterdir())) == 2  # one event file per session
    scalars = _board_scalars(run)
    metrics = read_metrics(run)
    assert {"loss/loss", "loss/sc", "loss/lg", "grad_norm", "time/data", "time/step"} <= set(
        scalars
    )
    assert any(tag.startswith("lr/") for tag in scalars)
    for tag, name in [("loss/loss", "loss"), ("loss/sc", "sc"), ("grad_norm", "grad_norm")]:
        assert [step for step, _ in scalars[tag]] == [1, 2, 3, 4]  # step 3 not shown twice
        for (_, value), m in zip(scalars[tag], metrics, strict=True):
            assert value == pytest.approx(m[name], rel=1e-6), (tag, m)


def _alter_losses(monkeypatch, alter) -> None:
    """Patch the objective: `alter(call, out, terms)` may change the terms of call 1, 2, ..."""
    from student.objective import Objective

    real, calls = Objective.__call__, itertools.count(1)

    def altered(self, out, batch):
        terms = real(self, out, batch)
        alter(next(calls), out, terms)
        return terms

    monkeypatch.setattr(Objective, "__call__", altered)


def test_non_finite_losses_are_skipped_then_stop_the_run(train_setup, tmp_path, monkeypatch):
    def nan_loss(call, out, terms):
        if call == 2 or call >= 4:  # one bad step, later only bad steps
            terms["loss"] = terms["loss"] * float("nan")

    _alter_losses(monkeypatch, nan_loss)
    dataset, init = train_setup
    run = tmp_path / "run"
    result = runner.invoke(
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
            "--steps",
            "10",
            "--batch-size",
            "1",
            "--set",
            "max_bad_steps=3",
            *FAST,
        ],
    )
    assert result.exit_code != 0
    assert "3 non-finite losses or gradients in a row at step 3" in str(result.exception)
    assert "keys" in str(result.exception)
    records = read_metrics(run)
    assert [r["step"] for r in records if "skipped" not in r] == [1, 2]
    assert sum("skipped" in r for r in records) == 4


class _NanGradient(torch.autograd.Function):
    """Adds 0 to the loss, and NaN to the gradient of the prediction."""

    @staticmethod
    def forward(ctx, pred):
        ctx.like = (pred.shape, pred.dtype)
        return pred.new_zeros(())

    @staticmethod
    def backward(ctx, grad):
        shape, dtype = ctx.like
        return torch.full(shape, float("nan"), dtype=dtype)


def test_non_finite_gradient_skips_and_resume_drops_the_skip_record(
    train_setup, tmp_path, monkeypatch
):
    def nan_gradient_once(call, out, terms):
        if call == 2:
            terms["loss"] = terms["loss"] + _NanGradient.apply(out["pred"])

    _alter_losses(monkeypatch, nan_gradient_once)
    dataset, init = train_setup
    run = tmp_path / "run"
    every = ["--steps", "3", "--batch-size", "1", "--set", "checkpoint_every=1"]
    metrics = train(run, dataset, init, *every)
    assert [(r["step"], r.get("skipped")) for r in metrics] == [
        (1, None),
        (2, "non-finite gradient"),  # the loss itself was finite
        (2, None),
        (3, None),
    ]
    assert all(r["loss"] == r["loss"] for r in metrics if "loss" in r)
    for step in (2, 3):
        (run / "checkpoints" / f"step_{step:07d}.pt").unlink()
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    assert [(r["step"], r.get("skipped")) for r in read_metrics(run)] == [
        (1, None),
        (2, None),
        (3, None),
    ]
