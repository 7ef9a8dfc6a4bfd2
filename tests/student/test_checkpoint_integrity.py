"""Checkpoints are checksummed when published and verified when read (resume, export), bounded
by `checkpoint.keep_last` / `keep_every`, cleaned of what a killed write left, and a full disk
is an `OSError(ENOSPC)` naming the checkpoint with no temporary file left behind."""

from __future__ import annotations

import errno
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from train_helpers import read_metrics, runner, train

from student.checkpoint import load_checkpoint, save_checkpoint
from student.cli import app
from student.config import CheckpointSettings
from student.rundir import RunDir


def _flip(path: Path, at: int | None = None) -> None:
    """Flip the bits of one byte of `path` (by default in its middle)."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_checksum_is_published_beside_the_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "run", 3, {"model": {"w": torch.arange(10.0)}})
    sidecar = RunDir(tmp_path / "run").checksum(path)
    digest, name = sidecar.read_text().split()
    assert name == path.name and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    done = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=path.parent, capture_output=True)
    assert done.returncode == 0, done.stdout
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(10.0))


def test_flipped_bytes_are_refused_naming_the_file(tmp_path):
    path = save_checkpoint(tmp_path / "run", 3, {"model": {"w": torch.arange(1000.0)}})
    _flip(path)
    with pytest.raises(ValueError, match="delete it to resume from the previous one") as refused:
        load_checkpoint(path)
    assert str(path) in str(refused.value) and "damaged checkpoint" in str(refused.value)


def test_resume_and_export_refuse_a_damaged_checkpoint(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "2", "--batch-size", "1", "--set", "checkpoint_every=1")
    newest = RunDir(run).checkpoint(2)
    _flip(newest, at=newest.stat().st_size - 4096)
    for args in (["train", "--out", str(run), "--resume", "--steps", "3"],
                 ["export", str(run), "--out", str(tmp_path / "hf")]):  # fmt: skip
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2, refused.output
        line = refused.output.strip()
        assert line.startswith(f"error: {newest}: damaged checkpoint") and "\n" not in line, line
        assert line.endswith("delete it to resume from the previous one"), line
    newest.unlink()  # as the message says: the run resumes from step 1
    done = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "3"])
    assert done.exit_code == 0, done.output
    assert [m["step"] for m in read_metrics(run)] == [1, 2, 3]


def test_keep_last_and_keep_every_bound_the_checkpoints(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    keep = ["--set", "checkpoint.keep_last=2", "--set", "checkpoint.keep_every=3"]
    train(
        run,
        dataset,
        init,
        "--steps",
        "7",
        "--batch-size",
        "1",
        "--set",
        "checkpoint_every=1",
        *keep,
    )
    kept = RunDir(run).checkpoint_files()
    assert [p.name for p in kept] == ["step_0000003.pt", "step_0000006.pt", "step_0000007.pt"]
    sums = sorted(p.name for p in (run / "checkpoints").glob("*.sha256"))
    assert sums == [f"{p.name}.sha256" for p in kept]


def test_keep_settings_default_to_keeping_all_and_are_checked():
    assert CheckpointSettings().keeps(1, [7])
    assert not CheckpointSettings(keep_last=1).keeps(1, [7])
    assert CheckpointSettings(keep_last=1, keep_every=2).keeps(4, [7])
    for bad in ({"keep_last": 0}, {"keep_every": -1}):
        with pytest.raises(ValueError, match="checkpoint.keep_"):
            CheckpointSettings(**bad)


def test_a_killed_writes_leftovers_are_removed_by_the_next_run(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "1", "--batch-size", "1")
    checkpoints = run / "checkpoints"
    partial = checkpoints / ".step_0000002.pt.k1ll3d.tmp"  # what a kill mid-write leaves
    partial.write_bytes(b"\0" * (1 << 20))
    orphan = checkpoints / "step_0000009.pt.sha256"  # its checkpoint deleted by hand
    orphan.write_text("0" * 64 + "  step_0000009.pt\n")
    done = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "2"])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "step_0000001.pt",
        "step_0000001.pt.sha256",
        "step_0000002.pt",
        "step_0000002.pt.sha256",
    ]


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs (needs mount rights: root in this namespace)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)]).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True)  # busy: detach it anyway


def test_a_full_disk_is_enospc_naming_the_checkpoint_and_leaves_no_partial_file(small_disk):
    run = small_disk / "run"
    save_checkpoint(run, 1, {"model": {"w": torch.zeros(10)}})  # fits
    with pytest.raises(OSError) as full:
        save_checkpoint(run, 2, {"model": {"w": torch.zeros(1 << 20)}})  # 4 MiB does not
    assert full.value.errno == errno.ENOSPC
    assert full.value.filename == str(RunDir(run).checkpoint(2))
    assert "No space left on device" in str(full.value)
    assert shutil.disk_usage(small_disk).free > 256 << 10  # no open handle keeps the space
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_0000001.pt",
        "step_0000001.pt.sha256",
    ]
