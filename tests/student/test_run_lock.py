"""One `student train` owns a run directory at a time: a second one (a second `--resume`
included) is refused naming the holder, the lock of a killed process is taken over at once, and
under torchrun rank 0 holds it for every rank."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import FAST, read_metrics, runner, train

from student.cli import app
from student.rundir import RunDir

HOLD = "import sys, time, pathlib; from student.rundir import RunDir; "
HOLD += "RunDir(pathlib.Path(sys.argv[1])).lock(); "
HOLD += "print('held', flush=True); time.sleep(120)"
"""A process that holds the lock of run directory argv[1] until it is killed."""


def _holder(run: Path) -> subprocess.Popen:
    """Another process of this host holding `run`'s lock."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _resume(run: Path, *extra: str):
    return runner.invoke(app, ["train", "--out", str(run), "--resume", *extra])


def test_a_second_train_on_a_running_run_is_refused(train_setup, tmp_path, monkeypatch):
    """While a run trains, a second `--resume` and a second new run into it are refused in one
    line naming this host and process; the first runs to the end, then the lock is gone."""
    from student.trainer import Trainer

    dataset, init = train_setup
    run = tmp_path / "run"
    seen = []
    real_fit = Trainer.fit

    def fit_with_intruders(self, run_dir):
        seen.append(RunDir(run).lock_path.is_file())
        seen.append(_resume(run, "--steps", "5"))
        new = ["train", "--out", str(run), "--dataset", str(dataset), "--teacher", "alpha"]
        seen.append(runner.invoke(app, [*new, "--init", str(init), *FAST]))
        return real_fit(self, run_dir)

    monkeypatch.setattr(Trainer, "fit", fit_with_intruders)
    metrics = train(run, dataset, init, "--steps", "2", "--batch-size", "1")
    held, second, new = seen
    assert held
    holder = f"{socket.gethostname()} pid {os.getpid()}"
    for refused in (second, new):
        assert refused.exit_code == 2, refused.output
        line = refused.output.strip()
        assert line.startswith("error: ") and "\n" not in line, line
        assert "in use by another student train process" in line and holder in line, line
    assert [m["step"] for m in metrics] == [1, 2]  # no interleaved records
    assert not (run / "continued.yaml").exists()  # the refused --steps 5 recorded nothing
    assert not RunDir(run).lock_path.exists()


def test_another_process_holds_the_run_until_it_is_killed(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "1", "--batch-size", "1")
    holder = _holder(run)
    try:
        refused = _resume(run, "--steps", "2")
        assert refused.exit_code == 2, refused.output
        assert f"{socket.gethostname()} pid {holder.pid}" in refused.output
    finally:
        _kill(holder)  # kill -9: its lock file stays behind
    assert RunDir(run).lock_path.is_file()
    done = _resume(run, "--steps", "2")  # taken over at once
    assert done.exit_code == 0, done.output
    assert [m["step"] for m in read_metrics(run)] == [1, 2]


def _student_train(*args: str, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "student.cli", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def test_a_killed_train_leaves_a_lock_its_resume_takes_over(train_setup, tmp_path):
    """kill -9 of `student train` in the middle of its run: the next `--resume` trains."""
    dataset, init = train_setup
    run = tmp_path / "run"
    args = ["--out", str(run), "--dataset", str(dataset), "--teacher", "alpha"]
    args += ["--init", str(init), "--steps", "1000", "--batch-size", "1", *FAST]
    proc = _student_train(*args, "--set", "checkpoint_every=1", "--no-progress")
    deadline = time.monotonic() + 120
    while not RunDir(run).checkpoint(2).exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    _kill(proc)
    assert RunDir(run).lock_path.is_file()
    step = max(int(p.stem.split("_")[1]) for p in RunDir(run).checkpoint_files())
    done = _resume(run, "--steps", str(step + 1))
    assert done.exit_code == 0, done.output
    assert read_metrics(run)[-1]["step"] == step + 1


@pytest.mark.slow
def test_under_torchrun_a_second_job_is_refused_on_every_rank(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "1", "--batch-size", "1")
    holder = _holder(run)
    try:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += ["--nproc-per-node", "2", "-m", "student.cli", "train", "--out", str(run)]
        cmd += ["--resume", "--steps", "2"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    finally:
        _kill(holder)
    assert done.returncode != 0
    assert f"pid {holder.pid}" in done.stderr, done.stderr[-3000:]
    assert [m["step"] for m in read_metrics(run)] == [1]
