"""`student train`: a 2-process torchrun (gloo) run, resume equality, and a loss that goes down."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
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


def _refused(*args: str) -> str:
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "\nerror: " in "\n" + result.output
    return result.output


def test_bad_inputs_are_refused_before_the_run_directory_is_written(setup, tmp_path):
    dataset, init = setup
    run = tmp_path / "run"
    good = ["--out", str(run), "--dataset", str(dataset), "--teacher", "alpha", *FAST]
    assert "no_such" in _refused(*good, "--init", str(init), "--teacher", "no_such")
    assert "2 teacher weights for 1 teachers" in _refused(
        *good, "--init", str(init), "--set", "data.teacher_weights=[0.5,0.5]"
    )
    assert "labelgen tiny-checkpoint" in _refused(*good, "--init", str(init) + "-typo")
    dpt = write_tiny_checkpoint("dpt", tmp_path / "dpt")
    assert "holds a 'dpt' model, not Depth Anything" in _refused(*good, "--init", str(dpt))
    assert not run.exists()  # so the corrected command needs no --resume
    assert "continues" in _refused("--out", str(run), "--resume", "--steps", "5")


@pytest.mark.parametrize("config", ["table1-local-global-none", "table2-base"])
def test_ablation_configs_train(setup, tmp_path, config):
    dataset, init = setup
    path = Path(__file__).parents[2] / "configs" / "ablations" / f"{config}.yaml"
    metrics = _train(tmp_path / config, dataset, init, "--config", str(path), "--steps", "2")
    assert len(metrics) == 2 and all(m["loss"] == m["loss"] for m in metrics)  # finite, not NaN
    if config == "table2-base":
        assert "sc" in metrics[0] and "lg" not in metrics[0]
    else:
        assert "sc" not in metrics[0] and any("lg" in m for m in metrics)


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
    env = json.loads((run / "env.json").read_text())
    assert "torch" in json.dumps(env) and [r["step"] for r in env["resumes"]] == [2]
    for a, b in zip(full, resumed, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
        assert a["teacher"] == b["teacher"]


def test_accumulation_keeps_one_teacher_per_step_and_per_sample_mode_logs_each(setup, tmp_path):
    dataset, init = setup
    weights = ["--set", "data.teacher_weights=[1, 1]", "--steps", "4", "--batch-size", "1"]
    metrics = _train(tmp_path / "acc", dataset, init, *weights, "--set", "optim.accumulate=2")
    assert [len(m["teacher"]) for m in metrics] == [2] * 4  # two micro-batches per step
    assert all(len(set(m["teacher"])) == 1 for m in metrics)
    per_sample = ["--set", "data.per_sample_teacher=true", "--steps", "2", "--batch-size", "2"]
    metrics = _train(tmp_path / "ps", dataset, init, *per_sample)
    for m in metrics:
        (teachers,) = m["teacher"]  # one micro-batch, a teacher per sample
        assert len(teachers) == 2 and set(teachers) <= {"alpha", "beta"}


def _board_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the run: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_tensorboard_holds_the_metrics_once_per_step_across_a_resume(setup, tmp_path):
    pytest.importorskip("tensorboard")
    dataset, init = setup
    run = tmp_path / "run"
    board = ["--set", "tensorboard=true", "--set", "checkpoint_every=2"]
    _train(run, dataset, init, "--steps", "4", "--batch-size", "2", *board)
    (run / "checkpoints" / "step_0000004.pt").unlink()  # as if killed after step 3
    (run / "checkpoints" / "step_0000003.pt").unlink(missing_ok=True)
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    assert len(list((run / "tensorboard").iterdir())) == 2  # one event file per session
    scalars = _board_scalars(run)
    metrics = _metrics(run)
    assert {"loss/loss", "loss/sc", "loss/lg", "grad_norm", "time/data", "time/step"} <= set(
        scalars
    )
    assert any(tag.startswith("lr/") for tag in scalars)
    for tag, name in [("loss/loss", "loss"), ("loss/sc", "sc"), ("grad_norm", "grad_norm")]:
        assert [step for step, _ in scalars[tag]] == [1, 2, 3, 4]  # step 3 not shown twice
        for (_, value), m in zip(scalars[tag], metrics, strict=True):
            assert value == pytest.approx(m[name], rel=1e-6), (tag, m)


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
        "--set",
        "optim.accumulate=2",  # the first micro-batch of each step runs under DDP's no_sync
        *FAST,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = _metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(len(m["teacher"]) == 2 for m in metrics)
    assert json.loads((run / "env.json").read_text())["world_size"] == 2


def _alter_losses(monkeypatch, alter) -> None:
    """Patch `compute_losses`: `alter(call, out, terms)` may change the terms of call 1, 2, ..."""
    import student.train as train_module

    real, calls = train_module.compute_losses, itertools.count(1)

    def altered(out, batch, *args):
        terms = real(out, batch, *args)
        alter(next(calls), out, terms)
        return terms

    monkeypatch.setattr(train_module, "compute_losses", altered)


def test_non_finite_losses_are_skipped_then_stop_the_run(setup, tmp_path, monkeypatch):
    def nan_loss(call, out, terms):
        if call == 2 or call >= 4:  # one bad step, later only bad steps
            terms["loss"] = terms["loss"] * float("nan")

    _alter_losses(monkeypatch, nan_loss)
    dataset, init = setup
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
    records = _metrics(run)
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


def test_non_finite_gradient_skips_and_resume_drops_the_skip_record(setup, tmp_path, monkeypatch):
    def nan_gradient_once(call, out, terms):
        if call == 2:
            terms["loss"] = terms["loss"] + _NanGradient.apply(out["pred"])

    _alter_losses(monkeypatch, nan_gradient_once)
    dataset, init = setup
    run = tmp_path / "run"
    every = ["--steps", "3", "--batch-size", "1", "--set", "checkpoint_every=1"]
    metrics = _train(run, dataset, init, *every)
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
    assert [(r["step"], r.get("skipped")) for r in _metrics(run)] == [
        (1, None),
        (2, None),
        (3, None),
    ]


def test_logged_learning_rate_is_the_one_the_step_used(setup, tmp_path):
    dataset, init = setup
    lr = ["--set", "optim.lr=1e-3", "--set", "optim.warmup_steps=2", "--set", "optim.poly_power=1"]
    metrics = _train(tmp_path / "run", dataset, init, "--steps", "20", "--batch-size", "1", *lr)
    decoder = [m["lr"]["decoder"] for m in metrics]
    assert decoder[:3] == pytest.approx([0.5e-3, 1e-3, 1e-3 * 18 / 19])
    assert decoder[-1] == pytest.approx(1e-3 / 19) and min(decoder) > 0
    assert [m["lr"]["encoder"] for m in metrics] == pytest.approx([d / 10 for d in decoder])


def test_auto_normalization_for_every_term_and_paths_recorded_absolute(
    setup, tmp_path, monkeypatch
):
    dataset, init = setup
    monkeypatch.chdir(dataset.parent)
    auto = ["--set", "loss.norm_lg=auto", "--set", "loss.norm_grad=auto", "--steps", "1"]
    args = ["train", "--out", "run", "--dataset", dataset.name, "--init", init.name]
    result = runner.invoke(app, [*args, "--teacher", "alpha", *FAST, *auto])
    assert result.exit_code == 0, result.output
    config = (dataset.parent / "run" / "config.yaml").read_text()
    assert f"dataset: {dataset}" in config and f"init: {init}" in config
    monkeypatch.chdir(tmp_path)
    exported = runner.invoke(app, ["export", str(dataset.parent / "run"), "--out", "hf"])
    assert exported.exit_code == 0, exported.output


def test_export_loads_in_transformers_and_predict_writes_maps(setup, tmp_path):
    import numpy as np
    from PIL import Image
    from transformers import AutoModelForDepthEstimation, pipeline

    dataset, init = setup
    run, own_init = tmp_path / "run", tmp_path / "init"
    shutil.copytree(init, own_init)
    _train(run, dataset, own_init, "--steps", "2", "--batch-size", "1")
    shutil.rmtree(own_init)  # the run directory alone is enough to export and predict
    hf = tmp_path / "hf"
    result = runner.invoke(app, ["export", str(run), "--out", str(hf)])
    assert result.exit_code == 0, result.output
    assert f"exported {run} to {hf}" in result.output
    missing = runner.invoke(app, ["export", str(run), "--out", str(hf), "--step", "1"])
    assert missing.exit_code == 2 and "step_0000002.pt" in missing.output  # what there is
    assert AutoModelForDepthEstimation.from_pretrained(hf) is not None
    photo = sorted((dataset.parent / "photos").glob("*.jpg"))[1]
    depth = pipeline("depth-estimation", model=str(hf))(Image.open(photo))
    assert depth["predicted_depth"].ndim >= 2
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(hf), str(photo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    disparity = np.load(out / f"{photo.stem}.npy")
    assert disparity.shape == Image.open(photo).size[::-1] and np.isfinite(disparity).all()
    assert Image.open(out / f"{photo.stem}.png").size == Image.open(photo).size
    twin = tmp_path / "other" / photo.name
    twin.parent.mkdir()
    shutil.copy(photo, twin)
    clash = runner.invoke(app, ["predict", str(hf), str(photo), str(twin), "--out", str(out)])
    assert clash.exit_code == 2 and "both be written as" in clash.output
    from_run = runner.invoke(app, ["predict", str(run), str(photo), "--out", str(tmp_path / "p2")])
    assert from_run.exit_code == 0, from_run.output
    assert np.allclose(np.load(tmp_path / "p2" / f"{photo.stem}.npy"), disparity, atol=1e-4)


def test_prediction_stays_float32_under_bf16_autocast(setup):
    from student.model import load_student

    _, init = setup
    student = load_student(init).eval()
    x = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = student(x)
    pred = out["pred"]
    assert pred.dtype == torch.float32
    assert not torch.equal(pred, pred.bfloat16().float())  # not rounded to bf16 on the way
    keys = set(student.model.state_dict())
    assert any(k.startswith("head.conv") for k in keys) and not any(".head.head" in k for k in keys)


def test_fp16_overflow_skips_the_update_and_the_schedule():
    """The GradScaler path of `Trainer.optimizer_step` (run on GPUs with precision=fp16)."""
    from types import SimpleNamespace

    from student.train import Trainer

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    fake = SimpleNamespace(
        scaler=scaler,
        optimizer=optimizer,
        scheduler=scheduler,
        student=model,
        s=SimpleNamespace(optim=SimpleNamespace(grad_clip=1.0)),
    )
    before = [p.detach().clone() for p in model.parameters()]

    scaler.scale(model(torch.ones(2, 3)).sum() * float("inf")).backward()  # overflow
    assert Trainer.optimizer_step(fake) is None
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert scheduler.last_epoch == 0 and scaler.get_scale() == 2.0**15
    assert all(p.grad is None for p in model.parameters())

    scaler.scale(model(torch.ones(2, 3)).sum()).backward()
    norm = Trainer.optimizer_step(fake)
    assert norm is not None and norm == pytest.approx(4.0)  # grads 2, 2, 2 and 2
    assert not torch.equal(before[0], model.weight) and scheduler.last_epoch == 1
