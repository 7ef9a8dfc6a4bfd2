"""One conformance suite for every label backend (parametrized by the `backend` fixture)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from label_helpers import OTHER_PLAN, PLAN, damage_map, key_maps, shard_path, write_shard

from pipeline.labels.manifest import shard_checksum
from pipeline.labels.reader import PlanMismatchError
from pipeline.labels.store import backend_for_path, open_reader, open_writer
from pipeline.toolkit.tario import ShardError

CODEC_TOLERANCE = {"pcodec-f16": 1e-3, "blosc-zstd-f16": 1e-3, "pcodec-f32": 0.0}


def visible(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("codec", sorted(CODEC_TOLERANCE))
def test_round_trip_every_map(tmp_path, backend, content, codec):
    path = shard_path(tmp_path, backend)
    write_shard(path, backend, content, codec=codec)
    with open_reader(path, expected_plan_sha256=PLAN) as reader:
        assert reader.codec["name"] == codec
        for key, maps in content.items():
            if isinstance(maps, str):
                continue
            assert reader.names(key) == list(maps)  # canonical order as written
            for name, expected in maps.items():
                got = reader.read(key, name)
                assert got.dtype == np.float32 and got.shape == expected.shape
                rel = np.abs(got - expected) / np.abs(expected)
                assert rel.max() <= CODEC_TOLERANCE[codec], (key, name)


def test_key_order_metadata_and_backend_inference(tmp_path, backend, content):
    path = shard_path(tmp_path, backend)
    write_shard(path, backend, content, extra_meta={"teacher": "tiny"})
    assert backend_for_path(path) == backend
    with open_reader(path) as reader:
        assert reader.keys == list(content) and list(reader) == list(content)
        assert len(reader) == 4 and "img_001" in reader and "nope" not in reader
        assert reader.plan_sha256 == PLAN
        assert reader.codec == {"name": "pcodec-f16", "params": {"level": 8}}
        assert reader.extra_meta == {"teacher": "tiny"}
        assert reader.record("img_000")["kind"] == "disparity"


def test_random_access_by_key(tmp_path, backend, content):
    path = shard_path(tmp_path, backend)
    write_shard(path, backend, content)
    wanted = [("img_003", "r0.t0"), ("img_000", "full"), ("img_001", "r1.sc"), ("img_000", "r1.t0")]
    with open_reader(path) as reader:
        for key, name in wanted:
            expected = content[key][name]
            np.testing.assert_allclose(reader.read(key, name), expected, rtol=1e-3)
        with pytest.raises(KeyError, match="no key"):
            reader.record("img_999")
        with pytest.raises(KeyError, match="no map"):
            reader.read("img_003", "r1.sc")


def test_one_map_decodes_without_the_others(tmp_path, backend, content):
    path = shard_path(tmp_path, backend)
    write_shard(path, backend, content)
    damage_map(path, backend, "img_001", "r0.sc")
    damage_map(path, backend, "img_001", "full")
    with open_reader(path) as reader:
        for name, expected in content["img_000"].items():
            np.testing.assert_allclose(reader.read("img_000", name), expected, rtol=1e-3)
        np.testing.assert_allclose(
            reader.read("img_001", "r0.t0"), content["img_001"]["r0.t0"], rtol=1e-3
        )
        for name in ("r0.sc", "full"):
            with pytest.raises(ShardError, match=str(path)):
                reader.read("img_001", name)


def test_refuses_shard_of_another_plan(tmp_path, backend, content):
    path = shard_path(tmp_path, backend)
    write_shard(path, backend, content, plan_sha256=OTHER_PLAN)
    with pytest.raises(PlanMismatchError, match="different crop plan") as info:
        open_reader(path, expected_plan_sha256=PLAN)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_error_record_without_maps(tmp_path, backend, content):
    path = shard_path(tmp_path, backend)
    summary = write_shard(path, backend, content)
    assert summary.count == 4
    assert summary.failures == [{"key": "img_002", "error": content["img_002"]}]
    assert summary.pixels == sum(
        a.size for maps in content.values() if isinstance(maps, dict) for a in maps.values()
    )
    with open_reader(path) as reader:
        record = reader.record("img_002")
        assert record["error"] == content["img_002"] and record["flags"] == ["error"]
        assert reader.names("img_002") == [] and record["maps"] == {}
        assert reader.record("img_001")["error"] is None


def test_writer_refuses_out_of_order_and_missing_keys(tmp_path, backend):
    path = shard_path(tmp_path, backend)
    maps = key_maps(1, regions=1)
    with (
        pytest.raises(ValueError, match="expected 'k0'"),
        open_writer(path, backend=backend, keys=["k0", "k1"], plan_sha256=PLAN) as w,
    ):
        w.write("k1", maps)
    with (
        pytest.raises(ValueError, match="never written"),
        open_writer(path, backend=backend, keys=["k0", "k1"], plan_sha256=PLAN) as w,
    ):
        w.write("k0", maps)
    with (
        pytest.raises(ValueError, match="no maps and no error"),
        open_writer(path, backend=backend, keys=["k0"], plan_sha256=PLAN) as w,
    ):
        w.write("k0", {})
    with pytest.raises(ValueError, match="invalid"):
        open_writer(path, backend=backend, keys=["bad.key"], plan_sha256=PLAN)
    assert os.listdir(tmp_path) == []


def test_exception_inside_with_leaves_nothing(tmp_path, backend):
    path = shard_path(tmp_path, backend)
    with (
        pytest.raises(RuntimeError, match="teacher crashed"),
        open_writer(path, backend=backend, keys=["k0", "k1"], plan_sha256=PLAN) as w,
    ):
        w.write("k0", key_maps(1, regions=1))
        raise RuntimeError("teacher crashed")
    assert os.listdir(tmp_path) == []  # no shard, no index, no temporary
    with pytest.raises(FileNotFoundError):
        open_reader(path)


KILL_SCRIPT = """
import sys, time
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from label_helpers import key_maps
from pipeline.labels.store import open_writer
keys = [f"k{{i}}" for i in range(50)]
with open_writer(Path({path!r}), backend={backend!r}, keys=keys, plan_sha256="p" * 64) as w:
    for i, key in enumerate(keys):
        w.write(key, key_maps(i % 3, regions=1))
        if i == 2:
            Path({ready!r}).write_text("ready")
            time.sleep(60)
"""


def test_sigkill_mid_write_leaves_no_visible_shard(tmp_path, backend):
    out = tmp_path / "labels"
    out.mkdir()
    path, ready = shard_path(out, backend), tmp_path / "ready"
    root, tests = str(Path(__file__).parents[3]), str(Path(__file__).parent)
    script = KILL_SCRIPT.format(
        root=root, tests=tests, path=str(path), backend=backend, ready=str(ready)
    )
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), "the writer subprocess never got going"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert visible(out) == []  # only a hidden temporary remains
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in out.iterdir())
    with pytest.raises(FileNotFoundError):
        open_reader(path)


def test_flags_nan_inf_flat_clipped(tmp_path, backend):
    base = key_maps(1, regions=1)["r0.sc"]
    nan_map, inf_map, big_map = base.copy(), base.copy(), base.copy()
    nan_map[3:5, 7] = np.nan
    inf_map[0, :4] = np.inf
    big_map[10, 10:13] = [1e5, -2e5, 7e4]
    content = {
        "nan": {"r0.sc": nan_map},
        "inf": {"r0.sc": inf_map},
        "flat": {"r0.sc": np.full_like(base, 2.5), "r0.t0": np.zeros_like(base)},
        "big": {"r0.sc": big_map},
        "clean": {"r0.sc": base},
    }
    path = shard_path(tmp_path, backend)
    summary = write_shard(path, backend, content)
    assert summary.flags == {"clipped": 1, "flat": 1, "inf": 1, "nan": 1}
    with open_reader(path) as reader:
        flags = {k: reader.record(k)["flags"] for k in reader}
        assert flags == {
            "nan": ["nan"],
            "inf": ["inf"],
            "flat": ["flat"],
            "big": ["clipped"],
            "clean": [],
        }
        assert reader.record("nan")["maps"]["r0.sc"]["nan"] == 2
        assert reader.record("big")["maps"]["r0.sc"]["clipped"] == 3
        assert np.isnan(reader.read("nan", "r0.sc")[3:5, 7]).all()
        assert np.isposinf(reader.read("inf", "r0.sc")[0, :4]).all()
        clipped = reader.read("big", "r0.sc")[10, 10:13]
        np.testing.assert_array_equal(clipped, [65504.0, -65504.0, 65504.0])
        np.testing.assert_array_equal(reader.read("flat", "r0.sc"), 2.5)


def test_same_content_gives_identical_bytes(tmp_path, backend, content):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    sa = write_shard(shard_path(a, backend), backend, content)
    sb = write_shard(shard_path(b, backend), backend, content)
    assert sa.sha256 == sb.sha256 == shard_checksum(shard_path(a, backend))
    assert sa.bytes == sb.bytes > 0


def test_overwrite_replaces_a_published_shard(tmp_path, backend, content):
    path = shard_path(tmp_path, backend)
    write_shard(path, backend, content)
    first = shard_checksum(path)
    small = {"img_000": key_maps(3, regions=1)}
    write_shard(path, backend, small)
    assert shard_checksum(path) != first
    with open_reader(path) as reader:
        assert reader.keys == ["img_000"]
        np.testing.assert_allclose(
            reader.read("img_000", "r0.sc"), small["img_000"]["r0.sc"], rtol=1e-3
        )


def test_bad_maps_and_extras_are_rejected_before_writing(tmp_path, backend):
    path = shard_path(tmp_path, backend)
    good = key_maps(1, regions=1)
    with open_writer(path, backend=backend, keys=["k0"], plan_sha256=PLAN) as w:
        with pytest.raises(ValueError, match="2-D float array"):
            w.write("k0", {"r0.sc": np.zeros((2, 3, 4), np.float32)})
        with pytest.raises(ValueError, match="map name"):
            w.write("k0", {"r0.sc.bad": good["r0.sc"]})
        with pytest.raises(ValueError, match="not plain JSON"):
            w.write("k0", good, record_extra={"when": object()})
        w.write("k0", good)  # nothing of the rejected calls was written
    with open_reader(path) as reader:
        assert reader.names("k0") == list(good)


def test_float16_float64_and_integer_inputs(tmp_path, backend):
    base = key_maps(1, regions=1)
    maps = {
        "full": base["full"].astype(np.float64),
        "r0.sc": base["r0.sc"].astype(np.float16),  # e.g. a teacher run in fp16
        "r0.t0": np.round(base["r0.t0"]).astype(np.int32),
    }
    path = shard_path(tmp_path, backend)
    write_shard(path, backend, {"k0": maps})
    with open_reader(path) as reader:
        np.testing.assert_array_equal(reader.read("k0", "r0.sc"), maps["r0.sc"].astype(np.float32))
        np.testing.assert_array_equal(reader.read("k0", "r0.t0"), maps["r0.t0"])
        np.testing.assert_allclose(reader.read("k0", "full"), maps["full"], rtol=1e-3)


def test_backend_and_suffix_must_agree(tmp_path):
    with pytest.raises(ValueError, match="must end in '.zarr'"):
        open_writer(tmp_path / "000000.tar", backend="zarr", keys=["a"], plan_sha256=PLAN)
    with pytest.raises(ValueError, match="cannot tell the label backend"):
        open_reader(tmp_path / "000000.npz")
    with pytest.raises(ValueError, match="unknown label backend 'lmdb'"):
        open_writer(tmp_path / "000000.tar", backend="lmdb", keys=["a"], plan_sha256=PLAN)
    assert os.listdir(tmp_path) == []
