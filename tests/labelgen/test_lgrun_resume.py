"""Identity of the result whatever happens on the way: killed and resumed, split over ranks,
decoded in DataLoader workers. Compared byte for byte with one uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lgrun_helpers import (
    clean_env,
    column_bytes,
    copy_dataset,
    label,
    spec_str,
    temporaries,
)
from typer.testing import CliRunner

from labelgen.cli import app
from pipeline.dataset.verify import verify_dataset
from pipeline.toolkit.launch import Launch

# `labelgen run` with every teacher forward slowed down by SLOW seconds (the labels are the same;
# it only widens the window in which the process is killed mid-shard).
SLOW_CLI = """
import sys, time
import labelgen.run as run_module
SLOW = float(sys.argv.pop(1))
load_teacher = run_module.load_teacher
def slow_load_teacher(*args, **kwargs):
    teacher = load_teacher(*args, **kwargs)
    predict = teacher.predict
    def slowed(batch):
        time.sleep(SLOW)
        return predict(batch)
    teacher.predict = slowed
    return teacher
run_module.load_teacher = slow_load_teacher
from labelgen.cli import app
app()
"""


def cli_args(ds: Path, ckpt: Path, fmt: str = "wds") -> list[str]:
    return [
        "run",
        "--dataset",
        str(ds),
        "--teacher",
        spec_str("dav", ckpt),
        "--format",
        fmt,
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--no-progress",
    ]


def done_shards(column: Path) -> set[str]:
    try:
        manifest = json.loads((column / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return set()
    return {n for n, e in manifest["shards"].items() if e["status"] == "done"}


def kill_mid_second_shard(ds: Path, ckpt: Path, fmt: str, suffix: str) -> None:
    """Start the slowed CLI; SIGKILL it once shard 0 is published and shard 1 is being written."""
    column = ds / "labels" / "dav"
    log = ds.parent / "killed-run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SLOW_CLI, "0.25", *cli_args(ds, ckpt, fmt)],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if "000000" in done_shards(column) and list(column.glob(f".000001{suffix}.*.tmp")):
                break
            time.sleep(0.01)
        running = proc.poll() is None
        assert running, "the run ended before it could be killed:\n" + log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "fmt,suffix",
    [("wds", ".tar"), pytest.param("zarr", ".zarr", marks=pytest.mark.slow)],
)
def test_killed_mid_shard_and_resumed_equals_one_uninterrupted_run(
    fmt, suffix, base_dataset, reference, ckpt, tmp_path
):
    ds = copy_dataset(base_dataset, tmp_path / "ds")
    column = ds / "labels" / "dav"
    kill_mid_second_shard(ds, ckpt, fmt, suffix)
    # Killed mid-shard: shard 0 published, shard 1 only as a hidden temporary.
    assert done_shards(column) == {"000000"}
    assert (column / f"000000{suffix}").exists()
    assert not (column / f"000001{suffix}").exists()
    assert temporaries(column), "expected the killed run's temporary of shard 000001"

    # The same command again, to completion (in-process: the same CLI entry point).
    result = CliRunner().invoke(app, cli_args(ds, ckpt, fmt))
    assert result.exit_code == 0, result.output
    assert "dav: labelled 2 shards" in result.output
    assert temporaries(ds) == []

    if fmt == "wds":
        expected = reference
    else:  # an uninterrupted zarr run into another copy of the same dataset
        expected = copy_dataset(base_dataset, tmp_path / "expected")
        label(expected, [spec_str("dav", ckpt)], format="zarr")
    got, want = column_bytes(column), column_bytes(expected / "labels" / "dav")
    assert sorted(got) == sorted(want)
    assert "manifest.json" in got
    assert any(name.startswith(f"000001{suffix}") for name in got)
    for name in want:
        assert got[name] == want[name], f"{name} differs from the uninterrupted run"
    assert verify_dataset(ds, progress=False).ok


def test_two_ranks_equal_one_rank(base_dataset, reference, ckpt, tmp_path):
    ds = copy_dataset(base_dataset, tmp_path / "ds")
    column = ds / "labels" / "dav"
    (r0,) = label(ds, [spec_str("dav", ckpt)], env={"RANK": "0", "WORLD_SIZE": "2"})
    assert r0.shards_done == ["000000", "000002"]
    assert sorted(column_bytes(column)) == [
        "000000.tar",
        "000000.tar.idx.json",
        "000002.tar",
        "000002.tar.idx.json",
        "manifest.json",
    ]
    (r1,) = label(ds, [spec_str("dav", ckpt)], env={"RANK": "1", "WORLD_SIZE": "2"})
    assert r1.shards_done == ["000001"]
    assert column_bytes(column) == column_bytes(reference / "labels" / "dav")
    # A rank re-run afterwards finds its share done.
    (again,) = label(ds, [spec_str("dav", ckpt)], env={"RANK": "1", "WORLD_SIZE": "2"})
    assert "nothing to do (1 shards already done)" in again.summary()


def test_slurm_array_split_equals_one_rank(base_dataset, reference, ckpt, tmp_path):
    ds = copy_dataset(base_dataset, tmp_path / "ds")
    for task in ("4", "5", "6"):  # an array --array=4-6: three tasks, one shard each
        env = {"SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_COUNT": "3"}
        env["SLURM_ARRAY_TASK_MIN"] = "4"
        (report,) = label(
            ds, [spec_str("dav", ckpt)], env=env, launch=Launch(workers=0, progress=True)
        )
        assert report.shards_done == [f"{int(task) - 4:06d}"]
    assert column_bytes(ds / "labels" / "dav") == column_bytes(reference / "labels" / "dav")


@pytest.mark.slow
def test_two_concurrent_rank_processes_equal_one_rank(base_dataset, reference, ckpt, tmp_path):
    ds = copy_dataset(base_dataset, tmp_path / "ds")
    procs = []
    for rank in (0, 1):
        env = {**clean_env(), "RANK": str(rank), "WORLD_SIZE": "2"}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", "from labelgen.cli import app; app()", *cli_args(ds, ckpt)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode(errors="replace")
    assert column_bytes(ds / "labels" / "dav") == column_bytes(reference / "labels" / "dav")
    assert temporaries(ds) == []


def test_dataloader_workers_give_the_same_bytes(base_dataset, reference, ckpt, tmp_path):
    ds = copy_dataset(base_dataset, tmp_path / "ds")
    # Shard 0 only (the image with tiles), decoded in two DataLoader worker processes.
    (report,) = label(
        ds,
        [spec_str("dav", ckpt)],
        launch=Launch(workers=2, progress=False),
        env={"RANK": "0", "WORLD_SIZE": "3"},
    )
    assert report.shards_done == ["000000"]
    got, want = column_bytes(ds / "labels" / "dav"), column_bytes(reference / "labels" / "dav")
    for name in ("000000.tar", "000000.tar.idx.json"):
        assert got[name] == want[name]
