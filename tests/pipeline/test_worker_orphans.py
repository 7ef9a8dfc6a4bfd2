"""Worker processes never outlive their parent: a `kill -9` of `pipeline prepare`, `pipeline
world render` (spawn pools) or `evaluation run` (DataLoader workers) leaves no worker behind, and
`pipeline.toolkit.workers.guard` ends a worker whose parent died before or after it was called."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.toolkit import workers
from pipeline.toolkit.workers import exit_with_parent

GONE_WITHIN = 8.0  # seconds a worker may take to notice (the watchdog polls every second)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and (st := _stat(int(p.name))) is not None and int(st[1]) == pid:
            found.append(int(p.name))
    return found


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _gone_after(pids: list[int], seconds: float = GONE_WITHIN) -> list[int]:
    """The pids still running after `seconds` (polled)."""
    end = time.monotonic() + seconds
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < end:
        time.sleep(0.1)
    return left


def _kill(pids: list[int]) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _kill_with_workers(cmd: list[str], cwd: Path, workers: int, timeout: float = 90.0) -> None:
    """Start `cmd`, wait for `workers` children, kill -9 it: no child may be left."""
    log = cwd / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
    kids: list[int] = []
    try:
        end = time.monotonic() + timeout
        while len(kids := _children(proc.pid)) < workers and proc.poll() is None:
            assert time.monotonic() < end, f"no {workers} workers of {cmd} in {timeout} s"
            time.sleep(0.05)
        time.sleep(1.0)  # the workers get past their start-up
        kids = _children(proc.pid)
        assert proc.poll() is None, f"{cmd} ended before it was killed: {log.read_text()}"
        assert len(kids) >= workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = _gone_after(kids)
        assert not left, f"workers {left} of {cmd[:3]} outlived their parent"
    finally:
        _kill([proc.pid, *kids])
        proc.wait()


def _noise_pngs(folder: Path, n: int, h: int = 600, w: int = 800) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png", compress_level=0)
    return folder


def _script(tmp_path: Path, parent_code: str) -> Path:
    """A parent that starts a worker calling `guard` and writes its pid, then runs
    `parent_code`."""
    worker = (
        "import os, sys, time\n"
        "from pipeline.toolkit.workers import guard\n"
        "time.sleep(float(sys.argv[3]))\n"
        "how = guard(int(sys.argv[1]), kernel=sys.argv[2] == '1')\n"
        "open(sys.argv[4], 'w').write(how)\n"
        "time.sleep(120)\n"
    )
    (tmp_path / "worker.py").write_text(worker)
    parent = (
        "import os, subprocess, sys, time\n"
        "kernel, delay, ready = sys.argv[1:4]\n"
        "child = subprocess.Popen([sys.executable, sys.argv[4], str(os.getpid()), kernel, delay,"
        " ready], stdout=subprocess.DEVNULL)\n"
        "print(child.pid, flush=True)\n" + parent_code
    )
    (tmp_path / "parent.py").write_text(parent)
    return tmp_path / "parent.py"


@pytest.mark.parametrize("kernel", [True, False], ids=["prctl", "watchdog"])
def test_guarded_worker_exits_when_its_parent_is_killed(tmp_path, kernel):
    parent = _script(tmp_path, "time.sleep(120)\n")
    ready = tmp_path / "ready"
    args = [sys.executable, parent, "1" if kernel else "0", "0", ready, tmp_path / "worker.py"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=ENV)
    child = int(proc.stdout.readline())
    try:
        end = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < end and _alive(child), "the worker never got guarded"
            time.sleep(0.05)
        time.sleep(0.1)
        assert ready.read_text() == ("prctl" if kernel else "watchdog")
        proc.kill()
        proc.wait()
        assert not _gone_after([child]), "the worker outlived its parent"
    finally:
        _kill([proc.pid, child])
        proc.wait()


def test_worker_whose_parent_died_before_the_guard_exits(tmp_path):
    parent = _script(tmp_path, "")  # the parent ends at once, before the worker's guard
    ready = tmp_path / "ready"
    args = [sys.executable, parent, "1", "2", ready, tmp_path / "worker.py"]
    out = subprocess.run(args, stdout=subprocess.PIPE, text=True, env=ENV, check=True)
    child = int(out.stdout)
    try:
        assert not _gone_after([child], 60.0), "the orphaned worker kept running"
        assert not ready.exists(), "the worker went on after finding its parent gone"
    finally:
        _kill([child])


def test_a_parent_that_is_pid_1_is_alive(monkeypatch):
    monkeypatch.setattr(os, "getppid", lambda: 1)  # e.g. `python` as a container's entry point
    assert workers._alive(1, 1)
    assert not workers._alive(1, 77)  # re-parented: the direct parent is gone


def test_pools_started_from_other_threads_use_the_watchdog():
    assert exit_with_parent().kernel  # the main thread: PR_SET_PDEATHSIG is safe
    seen = []
    thread = threading.Thread(target=lambda: seen.append(exit_with_parent()))
    thread.start()
    thread.join()
    assert seen[0].parent == os.getpid() and not seen[0].kernel


def test_prepare_workers_die_with_a_killed_prepare(tmp_path):
    images = _noise_pngs(tmp_path / "images", 60)
    cmd = ["pipeline", "prepare", "--images", str(images), "--out", "ds", "--workers", "2"]
    _kill_with_workers([*cmd, "--no-progress"], tmp_path, workers=3)  # 2 + resource tracker


def test_world_render_workers_die_with_a_killed_render(tmp_path):
    cmd = ["pipeline", "world", "render", "--out", "w", "--images", "40", "--height", "160"]
    _kill_with_workers([*cmd, "--width", "240", "--workers", "2", "--no-progress"], tmp_path, 3)


@pytest.mark.slow
def test_evaluation_workers_die_with_a_killed_evaluation_run(tmp_path):
    from labelgen.teachers import write_tiny_checkpoint
    from pipeline.world.files import WorldSettings, render_world

    ckpt = write_tiny_checkpoint("depth-anything-v2", tmp_path / "dav2")
    render_world(tmp_path / "w", 30, WorldSettings(split="test", height=240, width=320), 2, False)
    cmd = ["evaluation", "run", "--model", f"depth-anything-v2:{ckpt}", "--dataset"]
    cmd += ["world=w", "--out", "ev", "--workers", "2", "--no-progress"]
    _kill_with_workers(cmd, tmp_path, workers=2)
