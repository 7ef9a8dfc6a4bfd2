"""`student train --resume --steps N`: a run continued to more steps, its schedule recomputed for
the new total from the checkpoint's step on, recorded beside the unchanged config."""

from __future__ import annotations

import pytest
import yaml
from train_helpers import read_metrics, runner, train

from student.cli import app
from student.optim import lr_factor


def test_schedule_of_a_continued_run_is_the_new_totals_from_the_continuation_on():
    for t in range(6):
        assert lr_factor(t, 10, 1, 0.9, ((6, 20),)) == lr_factor(t, 10, 1, 0.9)
    for t in range(6, 20):
        assert lr_factor(t, 10, 1, 0.9, ((6, 20),)) == lr_factor(t, 20, 1, 0.9)
    assert lr_factor(10, 10, 1, 0.9) == 0.0  # a finished run's schedule has ended ...
    assert lr_factor(10, 10, 1, 0.9, ((10, 20),)) == pytest.approx((10 / 20) ** 0.9)  # ... not now
    assert lr_factor(19, 10, 1, 0.9, ((10, 20),)) > 0 == lr_factor(20, 10, 1, 0.9, ((10, 20),))
    # two continuations: each from its own step on
    chain = ((10, 20), (15, 40))
    assert lr_factor(12, 10, 1, 1.0, chain) == lr_factor(12, 20, 1, 1.0)
    assert lr_factor(30, 10, 1, 1.0, chain) == lr_factor(30, 40, 1, 1.0)


def test_no_second_warm_up():
    """The warm-up is the first total's (a tenth of 10 steps: 1), not the new total's (5)."""
    continued = lr_factor(3, 10, 5, 1.0, ((3, 100),))
    assert continued == lr_factor(3, 100, 1, 1.0) > 0.9
    assert lr_factor(3, 100, 5, 1.0) == pytest.approx(4 / 5)  # what a fresh schedule would do


def test_a_finished_run_continues_to_more_steps(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    lr = ["--set", "optim.lr=1e-3", "--set", "optim.warmup_steps=1", "--set", "optim.poly_power=1"]
    first = train(run, dataset, init, "--steps", "4", "--batch-size", "1", *lr)
    config = (run / "config.yaml").read_text()

    done = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "7"])
    assert done.exit_code == 0, done.output
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == list(range(1, 8))
    assert metrics[:4] == first  # the first session's records stay as they were
    assert (run / "config.yaml").read_text() == config  # the original config, unchanged
    (entry,) = yaml.safe_load((run / "continued.yaml").read_text())
    assert (entry["at_step"], entry["steps"], entry["previous_steps"]) == (4, 7, 4)
    for m in metrics[4:]:  # steps 5..7 (0-based 4..6) on the schedule of 7 steps
        want = 1e-3 * lr_factor(m["step"] - 1, 7, 1, 1.0)
        assert m["lr"]["decoder"] == pytest.approx(want, rel=1e-6), m
    assert metrics[4]["lr"]["decoder"] > 0  # not the finished schedule's 0

    done = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert done.exit_code == 0 and "7 of 7 steps, nothing to resume" in done.output, done.output
    done = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "7"])
    assert done.exit_code == 0 and "nothing to resume" in done.output, done.output
    assert len(yaml.safe_load((run / "continued.yaml").read_text())) == 1


def test_continuing_to_no_more_than_the_checkpoint_is_refused(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "3", "--batch-size", "1")
    done = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "2"])
    assert done.exit_code == 2, done.output
    assert "newest checkpoint" in done.output and "at step 3" in done.output
    assert not (run / "continued.yaml").exists()


def test_a_continuation_killed_while_it_starts_is_still_continued(
    train_setup, tmp_path, monkeypatch
):
    """The intent to continue is durable before anything else: a `--resume --steps N` killed
    right after it (here: the next step raises) leaves a run that a plain `--resume` takes to N
    steps, not one that says it is already finished."""
    import student.train

    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "2", "--batch-size", "1")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patched:
        patched.setattr(student.train, "check_resume", killed)
        runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "4"])
    (entry,) = yaml.safe_load((run / "continued.yaml").read_text())
    assert (entry["at_step"], entry["steps"]) == (2, 4)
    done = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert done.exit_code == 0 and "already finished" not in done.output, done.output
    assert [m["step"] for m in read_metrics(run)] == [1, 2, 3, 4]
