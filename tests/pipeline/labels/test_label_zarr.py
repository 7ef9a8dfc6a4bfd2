"""zarr backend specifics: group layout, zarr shards, shape rules, fork safety, broken groups."""

from __future__ import annotations

import json
import multiprocessing
import warnings

import numpy as np
import pytest
from label_helpers import PLAN, key_maps, shard_path, write_shard

from pipeline.labels.store import open_reader, open_writer
from pipeline.toolkit.tario import ShardError


def test_layout_stacks_views_and_keeps_full_maps_per_key(tmp_path, content):
    import zarr

    path = shard_path(tmp_path, "zarr")
    write_shard(path, "zarr", content, rows_per_shard=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = zarr.open_group(str(path), mode="r")
        sc, tiles = group["sc"], group["tiles"]
        assert sc.shape == (5, 64, 64) and sc.chunks == (1, 64, 64) and sc.shards == (2, 64, 64)
        n_tiles = sum(
            ".t" in n for maps in content.values() if isinstance(maps, dict) for n in maps
        )
        assert tiles.dtype == np.float16 and tiles.shape == (n_tiles, 64, 64)
        assert sorted(group["full"].array_keys()) == ["img_000", "img_001", "img_003"]
        locations = group.attrs["locations"]
        array, row = locations["img_001"]["r1.sc"]
        np.testing.assert_allclose(group[array][row], content["img_001"]["r1.sc"], rtol=1e-3)
    assert len(list((path / "sc" / "c").iterdir())) == 3  # ceil(5 rows / 2) zarr shard files


def test_view_shapes_come_from_the_data_and_mismatches_are_rejected(tmp_path):
    path = shard_path(tmp_path, "zarr")
    small, large = key_maps(1, view=48, regions=1), key_maps(3, view=80, regions=1)
    with open_writer(path, backend="zarr", keys=["a", "b"], plan_sha256=PLAN) as w:
        w.write("a", small)
        with pytest.raises(ValueError, match=r"sc maps are \(48, 48\)"):
            w.write("b", large)
        w.write("b", {"full": large["full"], "r0.sc": small["r0.sc"]})  # still usable
    with open_reader(path) as reader:
        assert reader.read("b", "full").shape == large["full"].shape
        assert reader.read("a", "r0.t0").shape == (48, 48)


def _read_in_child(path: str, queue) -> None:
    with open_reader(path) as reader:
        queue.put(float(np.nansum(reader.read("img_000", "r0.sc"))))


def test_reader_survives_fork(tmp_path, content):
    path = shard_path(tmp_path, "zarr")
    write_shard(path, "zarr", content)
    reader = open_reader(path)
    parent = float(np.nansum(reader.read("img_000", "r0.sc")))  # zarr objects live in the parent
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_read_in_child, args=(str(path), queue))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0 and queue.get(timeout=5) == parent
    reader.close()


def edit_attrs(path, edit) -> None:
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    edit(meta["attributes"])
    meta_path.write_text(json.dumps(meta))


def test_broken_groups_are_refused(tmp_path, content):
    path = shard_path(tmp_path, "zarr")
    write_shard(path, "zarr", content)

    def escape(attrs):
        attrs["locations"]["img_000"]["r0.sc"] = ["../../elsewhere", 0]

    edit_attrs(path, escape)
    with open_reader(path) as reader, pytest.raises(ShardError, match="bad location"):
        reader.read("img_000", "r0.sc")
    edit_attrs(path, lambda attrs: attrs["records"].pop("img_001"))
    with pytest.raises(ShardError, match="do not match the keys"):
        open_reader(path)
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(ShardError, match=str(path)):
        open_reader(path)


def test_corrupt_zarr_shard_file_is_refused(tmp_path, content):
    path = shard_path(tmp_path, "zarr")
    write_shard(path, "zarr", content)
    for chunk in (path / "sc" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"\x00garbage" * 64)
    with open_reader(path) as reader:
        with pytest.raises(ShardError, match="cannot read map 'r0.sc'") as err:
            reader.read("img_000", "r0.sc")
        assert str(path) in str(err.value)
        reader.read("img_000", "r0.t0")  # other arrays are untouched
