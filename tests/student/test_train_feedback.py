"""What `student train` tells its user: the running loss with the progress (lines in a log), a
resumed finished run that says so; and two runs of the same settings that give the same metrics
whatever the thread count of the process and the load of the machine."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import torch
import yaml
from train_helpers import FAST, read_metrics, runner, train

from pipeline.toolkit.cpus import rank_threads
from student.cli import app

TIMES = ("data_time", "step_time")
"""What two identical runs may differ in."""


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _train_args(run, dataset, init, *extra: str) -> list[str]:
    return [
        "train", "--out", str(run), "--dataset", str(dataset), "--teacher", "alpha",
        "--teacher", "beta", "--init", str(init), *FAST, *extra,
    ]  # fmt: skip


def test_a_log_gets_a_line_per_record_with_the_running_loss_and_a_finished_run_says_so(
    train_setup, tmp_path
):
    dataset, init = train_setup
    run = tmp_path / "run"
    args = _train_args(run, dataset, init, "--steps", "3", "--batch-size", "2", "--device", "cpu")
    output = _invoke(*args)
    lines = [line for line in output.splitlines() if line.startswith("train: ")]
    metrics = read_metrics(run)
    assert [line.split(",")[0] for line in lines] == [
        "train: 1/3 steps (33%)",
        "train: 2/3 steps (66%)",
        "train: 3/3 steps (100%)",
    ], output
    for line, record in zip(lines, metrics, strict=True):  # log_every=1: each step's own terms
        status = line.split(" | ", 1)[1]
        assert status.startswith(f"loss {record['loss']:.4g} sc {record['sc']:.4g} ")
        assert f"lg {record['lg']:.4g}" in status and f"grad {record['grad']:.4g}" in status

    again = _invoke("train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu")
    assert f"{run} is already finished: it has 3 of 3 steps, nothing to resume" in again
    assert "train: " not in again and read_metrics(run) == metrics


def test_no_progress_prints_no_progress_line(train_setup, tmp_path):
    dataset, init = train_setup
    args = _train_args(tmp_path / "run", dataset, init, "--steps", "2", "--batch-size", "2")
    output = _invoke(*args, "--no-progress")
    assert "train: " not in output and "run directory:" in output


@contextlib.contextmanager
def _busy_machine(processes: int = 2):
    """Other work on every CPU while the block runs (processes this test starts and ends)."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_two_runs_give_the_same_metrics_whatever_the_threads_and_the_load(train_setup, tmp_path):
    """The run pins its thread count (recorded) and, on CPU, uses deterministic kernels: the
    accumulating `index_put_` behind the tile crops otherwise adds in the order its threads run,
    and another thread count sums in another order."""
    dataset, init = train_setup
    before = torch.get_num_threads()
    runs = []
    try:
        for name, threads in (("quiet", 1), ("busy", 2)):
            torch.set_num_threads(threads)  # what the process happened to be set to
            load = _busy_machine() if name == "busy" else contextlib.nullcontext()
            with load:
                metrics = train(tmp_path / name, dataset, init, "--steps", "4", "--batch-size", "2")
            runs.append([{k: v for k, v in m.items() if k not in TIMES} for m in metrics])
            assert torch.get_num_threads() == threads  # the process's own choice is restored
    finally:
        torch.set_num_threads(before)
    assert len(runs[0]) == 4 and runs[0] == runs[1]
    config = yaml.safe_load((tmp_path / "quiet" / "config.yaml").read_text())["settings"]
    assert config["threads"] == rank_threads() and config["deterministic"] is False
