"""wds backend specifics: WebDataset compatibility, the offset index, hostile and broken tars."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import webdataset
from label_helpers import PLAN, key_maps, shard_path, write_shard

from pipeline.labels.codecs import get_codec
from pipeline.labels.store import open_reader, open_writer
from pipeline.labels.wds import META_MEMBER, decode_payload, index_path
from pipeline.toolkit.atomic import read_json, write_json
from pipeline.toolkit.tario import ShardError


@pytest.fixture
def shard(tmp_path, content):
    path = shard_path(tmp_path, "wds")
    write_shard(path, "wds", content)
    return path


def test_webdataset_iterates_and_groups_by_key(shard, content):
    samples = list(webdataset.WebDataset(str(shard), shardshuffle=False))
    assert [s["__key__"] for s in samples] == list(content)  # metadata member skipped
    first = samples[0]
    expected = {"json"} | {f"{name}.pcf16" for name in content["img_000"]}
    assert {k for k in first if not k.startswith("__")} == expected
    record = json.loads(first["json"])
    assert record["kind"] == "disparity" and set(record["maps"]) == set(content["img_000"])
    codec = get_codec("pcodec-f16")
    sc = decode_payload(codec, first["r0.sc.pcf16"], "sample")  # a payload decodes alone
    np.testing.assert_allclose(sc, content["img_000"]["r0.sc"], rtol=1e-3)
    assert set(samples[2]) - {"__key__", "__url__", "__local_path__"} == {"json"}


def test_plain_tarfile_reads_it(shard):
    with tarfile.open(shard) as tf:
        names = tf.getnames()
        meta = json.load(tf.extractfile(META_MEMBER))
    assert names[0] == META_MEMBER and "img_000.r0.t0.pcf16" in names
    assert meta["plan_sha256"] == PLAN and meta["codec"]["name"] == "pcodec-f16"


def read_all(path, **kw) -> dict:
    with open_reader(path, **kw) as reader:
        return {(k, n): reader.read(k, n) for k in reader for n in reader.names(k)}


def test_index_is_used_and_scan_gives_the_same(shard):
    with open_reader(shard) as reader:
        assert reader.used_index
    with open_reader(shard, use_index=False) as reader:
        assert not reader.used_index
    a, b = read_all(shard), read_all(shard, use_index=False)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_missing_or_stale_index_falls_back_to_scan(shard):
    expected = read_all(shard)
    index = read_json(index_path(shard))
    write_json(index_path(shard), {**index, "tar_bytes": index["tar_bytes"] + 512})
    with open_reader(shard) as reader:
        assert not reader.used_index
    index_path(shard).unlink()
    got = read_all(shard)
    assert all(np.array_equal(got[k], expected[k]) for k in expected)


def test_index_pointing_at_wrong_bytes_is_refused(shard):
    index = read_json(index_path(shard))
    members = index["members"]
    members[1][1], members[2][1] = members[2][1], members[1][1]  # swap two offsets
    write_json(index_path(shard), index)
    with pytest.raises(ShardError, match="tar header does not match") as info:
        read_all(shard)
    assert str(shard) in str(info.value)


def hostile_tar(path, info: tarfile.TarInfo, data: bytes = b"x") -> None:
    meta = {"format": "depth-labels", "format_version": 1, "keys": ["a"], "plan_sha256": PLAN}
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        blob = json.dumps(meta).encode()
        head = tarfile.TarInfo(META_MEMBER)
        head.size = len(blob)
        tf.addfile(head, io.BytesIO(blob))
        info.size = len(data) if info.isreg() else 0
        tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


def symlink(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (tarfile.TarInfo("/etc/a.json"), "unsafe member name '/etc/a.json'"),
        (tarfile.TarInfo("../a.json"), "unsafe member name '../a.json'"),
        (symlink("a.json"), "'a.json' is not a regular file"),
    ],
    ids=["absolute", "dotdot", "symlink"],
)
def test_hostile_members_are_refused(tmp_path, info, reason):
    path = tmp_path / "000000.tar"
    hostile_tar(path, info)
    with pytest.raises(ShardError) as err:
        open_reader(path)
    assert str(path) in str(err.value) and reason in str(err.value)


@pytest.mark.parametrize("keep_index", [True, False])
def test_truncated_tar_is_refused(shard, keep_index):
    if not keep_index:
        index_path(shard).unlink()
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError) as err:
        read_all(shard)
    assert str(shard) in str(err.value)


@pytest.mark.parametrize("keep_index", [True, False])
def test_oversized_member_is_refused(shard, keep_index):
    if not keep_index:
        index_path(shard).unlink()
    with pytest.raises(ShardError, match=r"member '.*' is oversized") as err:
        open_reader(shard, max_member_bytes=1000)
    assert str(shard) in str(err.value)


def test_garbage_and_foreign_tars_are_refused(tmp_path):
    garbage = tmp_path / "000000.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ShardError, match=str(garbage)):
        open_reader(garbage)
    foreign = tmp_path / "000001.tar"
    with tarfile.open(foreign, "w") as tf:
        info = tarfile.TarInfo("a.jpg")
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(ShardError, match="not a label shard"):
        open_reader(foreign)


def test_overlong_member_name_is_rejected_before_writing(tmp_path):
    path = tmp_path / "000000.tar"
    key = "k" * 80
    with open_writer(path, keys=[key], plan_sha256=PLAN) as w:
        with pytest.raises(ValueError, match="over 100 bytes"):
            w.write(key, {"r0.t1234567890": key_maps(1)["r0.sc"]})
        w.write(key, {"r0.sc": key_maps(1)["r0.sc"]})  # the writer is still usable
    assert open_reader(path).names(key) == ["r0.sc"]
