"""The training step: a loss that goes down, the learning rate of each step, fp16 overflow and
the prediction's precision."""

from __future__ import annotations

import pytest
import torch
from train_helpers import train


def test_training_on_a_small_fixed_set_lowers_the_loss(train_setup, tmp_path):
    dataset, init = train_setup
    metrics = train(
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


def test_logged_learning_rate_is_the_one_the_step_used(train_setup, tmp_path):
    dataset, init = train_setup
    lr = ["--set", "optim.lr=1e-3", "--set", "optim.warmup_steps=2", "--set", "optim.poly_power=1"]
    metrics = train(tmp_path / "run", dataset, init, "--steps", "20", "--batch-size", "1", *lr)
    decoder = [m["lr"]["decoder"] for m in metrics]
    assert decoder[:3] == pytest.approx([0.5e-3, 1e-3, 1e-3 * 18 / 19])
    assert decoder[-1] == pytest.approx(1e-3 / 19) and min(decoder) > 0
    assert [m["lr"]["encoder"] for m in metrics] == pytest.approx([d / 10 for d in decoder])


def test_prediction_stays_float32_under_bf16_autocast(train_setup):
    from student.model import load_student

    _, init = train_setup
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
    """The GradScaler path of `Optimization.step` (run on GPUs with precision=fp16)."""
    from student.optim import Optimization

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    optimization = Optimization(optimizer, scheduler, scaler, list(model.parameters()), 1.0)
    before = [p.detach().clone() for p in model.parameters()]

    scaler.scale(model(torch.ones(2, 3)).sum() * float("inf")).backward()  # overflow
    assert optimization.step() is None
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert scheduler.last_epoch == 0 and scaler.get_scale() == 2.0**15
    assert all(p.grad is None for p in model.parameters())

    scaler.scale(model(torch.ones(2, 3)).sum()).backward()
    norm = optimization.step()
    assert norm is not None and norm == pytest.approx(4.0)  # grads 2, 2, 2 and 2
    assert not torch.equal(before[0], model.weight) and scheduler.last_epoch == 1


def test_objective_resolves_auto_from_the_teacher_count_and_keeps_the_rest():
    from student.config import LossSettings
    from student.objective import Objective

    auto = LossSettings(norm_sc="auto", norm_lg="auto", norm_grad="local")
    one, several = Objective(auto, n_teachers=1), Objective(auto, n_teachers=3)
    assert (one.loss.norm_sc, one.loss.norm_lg, one.loss.norm_grad) == ("none", "none", "local")
    assert (several.loss.norm_sc, several.loss.norm_lg) == ("hybrid", "hybrid")
    assert several.loss.norm_grad == "local" and auto.norm_sc == "auto"  # a copy, resolved
    assert several.loss.resolved(1) == several.loss  # concrete values stay as they are
    assert Objective(auto, 1, feature_width=8).align is not None
    assert Objective(LossSettings(lambda_feat=0), 1, feature_width=8).align is None
