"""The weight average of `optim.ema`: its update rule, its buffers, its resumption from a
checkpoint and the weights an export takes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from student.ema import WeightAverage, averaged_weights, effective_decay


def model_with_buffers() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))  # running stats and a step count


def test_the_average_follows_the_update_rule():
    model = model_with_buffers()
    ema = WeightAverage(model, decay=0.9)
    expected = model[0].weight.detach().clone()
    for n in range(1, 30):
        with torch.no_grad():
            model[0].weight.add_(float(n))
        ema.update(model)
        d = effective_decay(0.9, n)
        expected = d * expected + (1 - d) * model[0].weight.detach()
    assert torch.allclose(ema.average["0.weight"], expected, atol=1e-5)
    assert effective_decay(0.9, 1) == pytest.approx(2 / 11) and effective_decay(0.9, 10**6) == 0.9


def test_constant_weights_stay_and_integer_buffers_are_copied():
    model = model_with_buffers()
    ema = WeightAverage(model, decay=0.99)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model[1].num_batches_tracked.fill_(7)
    for _ in range(5):
        ema.update(model)
    for name, value in ema.weights(model.state_dict()).items():
        if name.endswith("num_batches_tracked"):
            assert int(value) == 7
        else:
            assert torch.equal(value, before[name])


def test_a_resumed_average_equals_an_uninterrupted_one():
    def run(steps: int, resume_at: int | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = model_with_buffers()
        ema = WeightAverage(model, decay=0.95)
        for step in range(steps):
            with torch.no_grad():
                model[0].weight.mul_(1.01).add_(0.1)
            ema.update(model)
            if step == resume_at:  # a checkpoint, then a new process's average restored from it
                state = ema.state_dict()
                ema = WeightAverage(model_with_buffers(), decay=0.5)
                ema.load_state_dict(state)
        return ema.average

    whole, resumed = run(20, None), run(20, 9)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_exports_take_the_average_when_the_run_kept_one():
    model = nn.Linear(2, 2).half()
    ema = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.add_(1)
    checkpoint = {"model": model.state_dict()}
    assert averaged_weights(checkpoint) is checkpoint["model"]
    checkpoint["ema"] = ema.state_dict()
    weights = averaged_weights(checkpoint)
    assert weights["weight"].dtype == torch.float16
    assert torch.equal(weights["weight"], ema.average["weight"].half())
    assert not torch.equal(weights["weight"], model.weight)


def test_bad_decays_and_other_architectures_are_refused():
    with pytest.raises(ValueError, match="optim.ema must be in"):
        WeightAverage(nn.Linear(2, 2), decay=1.0)
    state = WeightAverage(nn.Linear(2, 2), decay=0.9).state_dict()
    with pytest.raises(ValueError, match="another architecture"):
        WeightAverage(nn.Linear(2, 3, bias=False), decay=0.9).load_state_dict(state)


def test_a_run_keeps_resumes_and_exports_its_average(train_setup, tmp_path):
    from train_helpers import runner, train
    from transformers import AutoModelForDepthEstimation

    from student.checkpoint import load_checkpoint
    from student.cli import app

    dataset, init = train_setup
    run = tmp_path / "run"
    args = ("--steps", "4", "--batch-size", "2", "--set", "checkpoint_every=2")
    train(run, dataset, init, *args, "--set", "optim.ema=0.5")
    last = run / "checkpoints" / "step_0000004.pt"
    straight = load_checkpoint(last)
    assert straight["ema"]["updates"] == 4 and straight["ema"]["decay"] == 0.5
    last.unlink()  # as if killed after step 3: the average resumes from step 2's
    assert runner.invoke(app, ["train", "--out", str(run), "--resume"]).exit_code == 0
    resumed = load_checkpoint(last)
    for name, value in straight["ema"]["average"].items():
        assert torch.allclose(resumed["ema"]["average"][name], value, rtol=1e-5, atol=1e-7), name

    out = tmp_path / "export"
    assert runner.invoke(app, ["export", str(run), "--out", str(out)]).exit_code == 0
    exported = AutoModelForDepthEstimation.from_pretrained(out).state_dict()
    name = next(k for k in exported if k.endswith("head.conv1.weight"))
    assert torch.equal(exported[name], averaged_weights(resumed)[name])
    assert not torch.equal(exported[name], resumed["model"][name])  # the average, not the last
    assert (
        "exponential moving average of the trained weights (decay 0.5"
        in (out / "README.md").read_text()
    )
