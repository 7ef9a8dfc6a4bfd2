"""`--claim`: shards are claimed with expiring lock files; a stale lock of a dead worker is taken
over, a fresh lock of a live worker makes this worker skip the shard."""

from __future__ import annotations

import json
import os
import time

import pytest
from lgrun_helpers import column_bytes, copy_dataset, forget_shard, label, spec_str

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
