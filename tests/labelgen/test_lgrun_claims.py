"""`--claim`: shards are claimed with expiring lock files; a stale lock of a dead worker is taken
over (at once when it names a process of this host that is gone), a fresh lock of a live worker
makes this worker skip the shard and exit 3. Plain runs hold a lock per column and rank, so a
second one on the same column is refused."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from lgrun_helpers import clean_env, column_bytes, copy_dataset, forget_shard, label, spec_str
from typer.testing import CliRunner

from labelgen.cli import app
from pipeline.labels.manifest import ColumnManifest


def write_lock(column, shard: str, owner: str, age: float):
    claims = column / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    lock = claims / f"{shard}.lock"
    when = time.time() - age
    lock.write_text(json.dumps({"owner": owner, "claimed_at": when}))
    os.utime(lock, (when, when))
    return lock


def test_stale_lock_of_a_dead_worker_is_taken_over(dataset, reference, ckpt):
    column = dataset / "labels" / "dav"
    lock = write_lock(column, "000000", "deadhost:4242:deadbeef", age=3600)
    (report,) = label(dataset, [spec_str("dav", ckpt)], claim=True, claim_ttl=60)
    assert report.shards_done == ["000000", "000001", "000002"]
    assert not lock.exists()  # taken over, then released
    assert list((column / ".claims").iterdir()) == []
    assert column_bytes(column) == column_bytes(reference / "labels" / "dav")


def test_fresh_lock_of_a_live_worker_makes_this_worker_skip_the_shard(dataset, reference, ckpt):
    column = dataset / "labels" / "dav"
    lock = write_lock(column, "000001", "otherhost:77:cafe", age=1)
    body = lock.read_bytes()
    (report,) = label(dataset, [spec_str("dav", ckpt)], claim=True, claim_ttl=900)
    assert report.shards_done == ["000000", "000002"]
    assert report.shards_failed == []
    manifest = ColumnManifest.load(column / "manifest.json")
    assert sorted(manifest.shards) == ["000000", "000002"]  # 000001 is not marked done
    assert not (column / "000001.tar").exists()
    assert lock.read_bytes() == body  # the other worker's lock is left alone

    # The other worker goes away without labelling; once its lock is gone the shard is done.
    lock.unlink()
    (again,) = label(dataset, [spec_str("dav", ckpt)], claim=True, claim_ttl=900)
    assert again.shards_done == ["000001"]
    assert column_bytes(column) == column_bytes(reference / "labels" / "dav")


@pytest.fixture
def partly_done(reference, tmp_path):
    """A copy of the reference dataset whose column has shards 0 and 2 but not 1."""
    ds = copy_dataset(reference, tmp_path / "ds")
    forget_shard(ds, "dav", "000001")
    return ds


def test_claiming_skips_shards_already_done(partly_done, reference, ckpt):
    (report,) = label(partly_done, [spec_str("dav", ckpt)], claim=True)
    assert report.shards_done == ["000001"] and report.shards_skipped == 2
    got = column_bytes(partly_done / "labels" / "dav")
    assert got == column_bytes(reference / "labels" / "dav")


def test_summary_does_not_call_a_column_with_claimed_shards_finished(partly_done, ckpt):
    write_lock(partly_done / "labels" / "dav", "000001", "otherhost:77:cafe", age=1)
    (report,) = label(partly_done, [spec_str("dav", ckpt)], claim=True, claim_ttl=900)
    assert report.shards_done == []
    assert "nothing to do" not in report.summary()
    assert "000001" in report.summary()


HOLD = """
import sys, time
from pathlib import Path
from pipeline.toolkit.claims import try_claim
claim = try_claim(Path(sys.argv[1]), sys.argv[2], "another-process", float(sys.argv[3]))
print("held" if claim else "taken", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def held_by_another_process(column, item: str, ttl: float):
    """A live process of this host that holds the lock `item` of `column` until killed (-9)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(column / ".claims"), item, str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def invoke(*args: str):
    return CliRunner().invoke(app, ["run", "--batch-size", "4", "--workers", "0", *args])


def test_a_shard_held_by_a_live_worker_exits_3_then_its_dead_lock_is_taken_at_once(
    dataset, reference, ckpt
):
    column = dataset / "labels" / "dav"
    args = ["--dataset", str(dataset), "--teacher", spec_str("dav", ckpt), "--no-progress"]
    with held_by_another_process(column, "000001", ttl=900):
        result = invoke(*args, "--claim", "--claim-ttl", "900")
        assert result.exit_code == 3, result.output  # not complete yet
        assert "dav: labelled 2 shards" in result.output
        assert "not complete yet: shards 000001 are held by other workers" in result.output
        assert re.search(r"their locks expire within 1[45] min \d+ s", result.output)
    # The holder was killed (-9): its lock names a process of this host that is gone.
    again = invoke(*args, "--claim", "--claim-ttl", "900")
    assert again.exit_code == 0, again.output
    assert "dav: labelled 1 shards" in again.output
    assert list((column / ".claims").iterdir()) == []
    assert column_bytes(column) == column_bytes(reference / "labels" / "dav")


def test_a_second_plain_run_on_the_same_column_is_refused_in_one_line(dataset, reference, ckpt):
    column = dataset / "labels" / "dav"
    args = ["--dataset", str(dataset), "--teacher", spec_str("dav", ckpt), "--no-progress"]
    with held_by_another_process(column, "run-rank0-of-1", ttl=60) as other:
        result = invoke(*args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith(f"error: {column}: another `labelgen run` is labelling this")
        assert f"as rank 0 of 1 ({socket.gethostname()} pid {other.pid}" in lines[0]
        assert "--claim" in lines[0] and not list(column.glob("*.tar"))
        # another rank of a split run is not held up
        (rank1,) = label(dataset, [spec_str("dav", ckpt)], env={"RANK": "1", "WORLD_SIZE": "2"})
        assert rank1.shards_done == ["000001"]
    again = invoke(*args)  # the other run is gone (killed): its lock is taken over at once
    assert again.exit_code == 0, again.output
    assert "dav: labelled 2 shards" in again.output
    assert column_bytes(column) == column_bytes(reference / "labels" / "dav")


def test_a_held_shard_its_worker_finished_meanwhile_does_not_leave_the_column_incomplete(
    dataset, reference, ckpt, monkeypatch
):
    import labelgen.run
    from pipeline.labels.manifest import record_shard

    column, done = dataset / "labels" / "dav", reference / "labels" / "dav"
    real = labelgen.run.label_shard

    def the_other_worker_finishes_000001(job, *args, **kwargs):
        if job.out.name.startswith("000002"):
            for path in done.glob("000001.*"):
                shutil.copy(path, column / path.name)
            entry = ColumnManifest.load(done / "manifest.json").shards["000001"]
            record_shard(column, "000001", entry)
        return real(job, *args, **kwargs)

    monkeypatch.setattr(labelgen.run, "label_shard", the_other_worker_finishes_000001)
    with held_by_another_process(column, "000001", ttl=900):
        (report,) = label(dataset, [spec_str("dav", ckpt)], claim=True, claim_ttl=900)
    assert report.shards_done == ["000000", "000002"] and report.shards_held == []
    assert "not complete" not in report.summary()
    assert column_bytes(column) == column_bytes(done)
