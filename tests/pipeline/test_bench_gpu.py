"""`pipeline bench gpu`: parts run in order, results kept, resume, budget, no-CUDA refusal.

The fast tests replace the subprocess runner with a fake that prints what each benchmark prints;
the slow one runs the real `--smoke` path (every sub-benchmark's own smoke mode, on CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.bench import BENCHMARKS, gpu

ROWS = {
    "labelgen": [{"teacher": "dav2-large", "labelgen_over_bare": 0.91}],
    "train": [{"student": "small", "data_stall": 0.02}],
}
NAMES = {b.module: b.name for b in BENCHMARKS.values()}


class FakeRunner:
    """Stands in for `gpu.run_command`: writes the log a benchmark would, records the calls."""

    def __init__(self, status: dict[str, int | None] | None = None) -> None:
        self.calls: list[str] = []
        self.status = status or {}

    def __call__(self, argv, log: Path, timeout: float, env) -> int | None:
        name = NAMES[argv[argv.index("-m") + 1]]
        self.calls.append(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        if name in ("world", "world-metric"):
            report = Path(argv[argv.index("--out") + 1]) / "report" / "study.md"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(
                "# World study\n\n| configuration | AbsRel |\n|---|---|\n| base | 0.4 |\n"
            )
            log.write_text(f"[train base-s0] student train (1 s)\nreport: {report}\n")
        else:
            log.write_text("Loading weights: 100%\n" + json.dumps(ROWS[name], indent=1) + "\n")
        return self.status.get(name, 0)


@pytest.fixture
def fake(monkeypatch):
    runner = FakeRunner()
    monkeypatch.setattr(gpu, "run_command", runner)
    monkeypatch.setattr(
        gpu, "probe_machine", lambda: {"cuda": True, "torch": "2.x", "device": "NVIDIA H100"}
    )
    return runner


def test_runs_every_part_in_order_and_writes_the_report(tmp_path, fake, capsys):
    assert gpu.main(["--out", str(tmp_path), "--smoke"]) == 0
    # the families run bench train
    assert fake.calls == ["labelgen", "train", "world", "train", "world-metric"]
    assert "--student swinv2-tiny" in (tmp_path / "families.md").read_text()
    report = (tmp_path / "REPORT.md").read_text()
    assert "| teacher | labelgen_over_bare |" in report and "| dav2-large | 0.91 |" in report
    assert "| student | data_stall |" in report
    assert "### World study" in report and "| base | 0.4 |" in report
    assert "Command: `pipeline bench gpu --out" in report and "--smoke" in report
    for name in ("labelgen", "train", "world", "families", "world-metric"):
        assert json.loads((tmp_path / f"{name}.json").read_text())["rows"]
    out = capsys.readouterr().out
    assert "[gpu] labelgen: done in" in out and "[gpu] world: done in" in out


def test_a_second_run_skips_finished_parts_and_reruns_a_deleted_one(tmp_path, fake, capsys):
    gpu.main(["--out", str(tmp_path), "--smoke"])
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.md") if p.name != "REPORT.md"}
    fake.calls.clear()
    capsys.readouterr()
    assert gpu.main(["--out", str(tmp_path), "--smoke"]) == 0
    assert fake.calls == []
    assert capsys.readouterr().out.count(": skipped (") == 5
    assert {n: (tmp_path / n).stat().st_mtime_ns for n in mtimes} == mtimes
    (tmp_path / "train.md").unlink()
    assert gpu.main(["--out", str(tmp_path), "--smoke"]) == 0
    assert fake.calls == ["train"]
    assert "| student | data_stall |" in (tmp_path / "REPORT.md").read_text()


def test_a_tiny_budget_starts_nothing_and_lists_the_parts_left(tmp_path, fake, capsys):
    assert gpu.main(["--out", str(tmp_path), "--smoke", "--budget-s", "1"]) == gpu.EXIT_LEFT
    assert fake.calls == []
    out = capsys.readouterr().out
    assert "labelgen: not started" in out
    left = "labelgen, train, world, families, world-metric"
    assert f"left: {left}; run the same command again" in out
    assert f"Not finished: {left}" in (tmp_path / "REPORT.md").read_text()


def test_a_budget_between_parts_skips_the_long_ones_and_resumes_them_later(tmp_path, fake, capsys):
    # smoke estimates: labelgen 90 s, train 30 s, world and world-metric from MIN_SLICE_S = 60 s
    # on, families 45 s
    assert gpu.main(["--out", str(tmp_path), "--smoke", "--budget-s", "45"]) == gpu.EXIT_LEFT
    assert fake.calls == ["train"]
    assert "left: labelgen, world, families, world-metric" in capsys.readouterr().out
    assert gpu.main(["--out", str(tmp_path), "--smoke"]) == 0
    assert fake.calls[1:] == ["labelgen", "world", "train", "world-metric"]


def test_a_part_stopped_at_the_budget_or_failing_leaves_no_result(tmp_path, monkeypatch, capsys):
    runner = FakeRunner({"world": None, "labelgen": 1})
    monkeypatch.setattr(gpu, "run_command", runner)
    monkeypatch.setattr(gpu, "probe_machine", lambda: {"cuda": False, "torch": "-", "device": "-"})
    assert gpu.main(["--out", str(tmp_path), "--smoke"]) == gpu.EXIT_FAILED
    assert len(runner.calls) == 5  # a failure does not stop the parts after it
    assert not (tmp_path / "world.md").exists() and not (tmp_path / "labelgen.md").exists()
    out = capsys.readouterr().out
    assert "world: stopped" in out and "labelgen: failed" in out and "left: world" in out


def test_a_world_study_without_conclusion_is_a_finished_part(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "run_command", FakeRunner({"world": 3}))
    monkeypatch.setattr(gpu, "probe_machine", lambda: {"cuda": False, "torch": "-", "device": "-"})
    assert gpu.main(["--out", str(tmp_path), "--smoke"]) == 0
    assert "(exit 3)" in (tmp_path / "world.md").read_text()
    assert json.loads((tmp_path / "world.json").read_text())["exit"] == 3


def test_without_cuda_and_without_smoke_it_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu, "probe_machine", lambda: {"cuda": False, "torch": "-", "device": "-"})
    monkeypatch.setattr(gpu, "run_command", FakeRunner())
    assert gpu.main(["--out", str(tmp_path / "out")]) == gpu.EXIT_NO_CUDA
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "--smoke" in captured.err
    assert not (tmp_path / "out").exists()


def test_run_command_stops_the_whole_process_group_at_the_timeout(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); print('started', flush=True); "
        "time.sleep(60)"
    )
    start = time.monotonic()
    status = gpu.run_command(
        [sys.executable, "-c", code], tmp_path / "x.log", 2.0, dict(os.environ)
    )
    assert status is None and time.monotonic() - start < 20
    assert "started" in (tmp_path / "x.log").read_text()
    child = int(pid_file.read_text())
    for _ in range(50):  # the grandchild got the signal too; give the kernel a moment
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_last_json_reads_the_document_after_progress_noise():
    text = 'Writing shards: 100%\n[\n {"a": 1.5}\n]\nWarning: at exit\n'
    assert gpu.last_json(text) == [{"a": 1.5}]
    with pytest.raises(ValueError):
        gpu.last_json("no json here\n")


@pytest.mark.slow
def test_the_real_smoke_run_produces_every_table(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "pipeline.cli", "bench", "gpu", "--out", str(out), "--smoke"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (out / "REPORT.md").read_text()
    assert "| teacher |" in report and "genpercept" in report
    assert "| student |" in report and "data_stall" in report
    assert "### World study" in report
    assert not (out / "work" / "labelgen").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and again.stdout.count(": skipped (") == 5
    assert "beit-tiny" in report and "swinv2-tiny" in report  # the families part
    assert "### Metric depth on the world: canonical vs raw labels" in report
