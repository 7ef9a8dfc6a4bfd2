"""Column manifests: provenance checks, atomic saves, concurrent shard updates from processes."""

from __future__ import annotations

import multiprocessing

import pytest
from label_helpers import PLAN, shard_path, write_shard

from pipeline import __version__
from pipeline.labels.manifest import (
    ColumnManifest,
    create_or_check,
    record_shard,
    shard_checksum,
    shard_entry,
    shard_nbytes,
)


def provenance(**changes) -> dict:
    base = {
        "teacher": "depth-anything-v2",
        "adapter": "depth-anything-v2",
        "weights": {"source": "/models/dav2-small", "sha256": "c" * 64},
        "output_kind": "disparity",
        "invariance": "affine",
        "input_rule": {"short_side": 518, "multiple_of": 14},
        "precision": "bf16",
        "codec": {"name": "pcodec-f16", "params": {"level": 8}},
        "backend": "wds",
        "plan_sha256": PLAN,
    }
    return {**base, **changes}


@pytest.fixture
def column(tmp_path):
    column_dir = tmp_path / "labels" / "dav2-small"
    create_or_check(column_dir, provenance())
    return column_dir


def test_create_writes_header_once(column):
    manifest = ColumnManifest.load(column / "manifest.json")
    assert manifest.column == "dav2-small" and manifest.code_version == __version__
    assert manifest.shards == {} and manifest.weights["sha256"] == "c" * 64
    moved = provenance(weights={"source": "/elsewhere", "sha256": "c" * 64}, code_version="9.9")
    again = create_or_check(column, moved)  # same identity: the existing header is kept
    assert again.weights["source"] == "/models/dav2-small" and again.code_version == __version__


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weights": {"source": "/models/dav2-small", "sha256": "d" * 64}}, "weights.sha256"),
        ({"plan_sha256": "e" * 64}, "plan_sha256"),
        ({"backend": "zarr"}, "backend"),
    ],
)
def test_a_different_identity_is_refused(column, change, field):
    with pytest.raises(ValueError, match="dav2-small") as err:
        create_or_check(column, provenance(**change))
    assert field in str(err.value) and "--overwrite" in str(err.value)
    assert "new column name" in str(err.value)


def test_writer_summary_goes_into_the_manifest(tmp_path, column, content):
    path = shard_path(column, "wds", 3)
    summary = write_shard(path, "wds", content)
    manifest = record_shard(column, "000003", summary.manifest_entry())
    entry = ColumnManifest.load(column / "manifest.json").shards["000003"]
    assert entry == manifest.shards["000003"]
    assert entry["status"] == "done" and entry["count"] == 4
    assert entry["sha256"] == shard_checksum(path) and entry["bytes"] == shard_nbytes(path)
    assert entry["failures"] == [{"key": "img_002", "error": content["img_002"]}]
    assert entry["flags"] == {"error": 1} and entry["pixels"] == summary.pixels > 0
    assert ColumnManifest.load(column / "manifest.json").is_done("000003")


def test_recording_a_shard_checks_column_name_and_checksum(tmp_path, column):
    with pytest.raises(ValueError, match="does not exist"):
        record_shard(tmp_path / "labels" / "other", "000000", shard_entry("failed"))
    with pytest.raises(ValueError, match="shard name"):
        record_shard(column, "0", shard_entry("failed"))
    with pytest.raises(ValueError, match="sha256"):
        record_shard(column, "000000", {**shard_entry("failed"), "status": "done"})
    with pytest.raises(ValueError, match="status"):
        shard_entry("half-done")
    failed = record_shard(column, "000001", shard_entry("failed", error="disk full"))
    assert failed.shards["000001"]["error"] == "disk full"


def test_load_rejects_unknown_fields_and_bad_values(column):
    data = ColumnManifest.load(column / "manifest.json").to_dict()
    with pytest.raises(ValueError, match="unknown fields"):
        ColumnManifest.from_dict({**data, "colour": "red"})
    with pytest.raises(ValueError, match="output_kind"):
        ColumnManifest.from_dict({**data, "output_kind": "normals"})
    assert ColumnManifest.load_or_none(column / "nope.json") is None
    record_shard(column, "000000", shard_entry("done", count=1, sha256="0" * 64, nbytes=1))
    bad = column / "manifest.json"
    text = bad.read_text()
    assert '"status": "done"' in text
    bad.write_text(text.replace('"status": "done"', '"status": "maybe"'))
    with pytest.raises(ValueError, match=r"manifest\.json: .*status must be one of"):
        ColumnManifest.load(bad)  # the error names the file


def _record_many(column_dir, rank: int, per_rank: int) -> None:
    for i in range(per_rank):
        index = rank * per_rank + i
        entry = shard_entry("done", count=index, sha256=f"{index:064x}", nbytes=index)
        record_shard(column_dir, f"{index:06d}", entry)


def test_concurrent_processes_lose_no_update(column):
    ranks, per_rank = 6, 8
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(column, r, per_rank)) for r in range(ranks)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    shards = ColumnManifest.load(column / "manifest.json").shards
    assert sorted(shards) == [f"{i:06d}" for i in range(ranks * per_rank)]
    assert all(shards[f"{i:06d}"]["count"] == i for i in range(ranks * per_rank))
