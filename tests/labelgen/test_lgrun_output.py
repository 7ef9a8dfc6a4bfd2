"""What `labelgen run` writes: every key and planned view of every shard, records, manifest
provenance and checksums (wds and zarr), and label values equal to a direct teacher forward."""

from __future__ import annotations

import numpy as np
import pytest
from lgrun_helpers import TEACHER, label, make_dataset, spec_str, temporaries

import pipeline
from labelgen.teachers import load_teacher, parse_teacher_spec, resolve_teacher
from labelgen.views import build_views
from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.dataset.verify import verify_dataset
from pipeline.images.shards import read_image_shard, shard_keys
from pipeline.labels.codecs import get_codec
from pipeline.labels.column import LabelColumn
from pipeline.labels.manifest import ColumnManifest, shard_checksum, shard_nbytes
from pipeline.labels.store import open_reader

TILE = 560


@pytest.fixture(scope="module", params=["wds", "zarr"])
def labelled(request, ckpt, tmp_path_factory):
    """Three photos in two shards (2 + 1 keys), two regions each, labelled with the default
    full-view size; returns (dataset, format, teacher, report)."""
    fmt = request.param
    root = tmp_path_factory.mktemp(f"content-{fmt}")
    photos = {"img0": (620, 760), "img1": (300, 420), "img2": (400, 380)}
    ds = make_dataset(root, photos, shard_size=2, regions=2)
    # wds: the teacher's own full-view size; zarr: a small one (cheaper, same code path)
    spec = spec_str("dav", ckpt, full_size=None if fmt == "wds" else 140)
    (report,) = label(ds, [spec], format=fmt)
    teacher = load_teacher(parse_teacher_spec(spec))
    return ds, fmt, teacher, report


def test_every_key_and_planned_view_is_stored_in_order(labelled):
    ds, fmt, teacher, report = labelled
    info = load_dataset(ds)
    assert len(info.shards) == 2 and [s.count for s in info.shards] == [2, 1]
    assert report.shards_done == ["000000", "000001"] and not report.shards_failed
    n_views = 0
    for shard in info.shards:
        plan = load_plan_shard(info.layout.plan_shard(shard.index))
        keys = shard_keys(info.layout.image_shard(shard.index))
        path = LabelColumn(info, "dav").shard_path(shard.index)
        assert path.suffix == {"wds": ".tar", "zarr": ".zarr"}[fmt]
        with open_reader(path, expected_plan_sha256=shard.plan_sha256) as reader:
            assert list(reader.keys) == keys == list(plan)
            for key in keys:
                entry = plan[key]
                planned = [name for name, _ in views(entry)]
                assert len(planned) >= 4  # two regions, each with its context view and tiles
                assert reader.names(key) == ["full", *planned]
                record = reader.record(key)
                assert record["kind"] == "disparity"
                assert record["error"] is None and record["flags"] == []
                h, w = entry["size"]
                assert record["maps"]["full"]["shape"] == list(teacher.full_view_size(h, w))
                for name in planned:
                    assert record["maps"][name]["shape"] == [TILE, TILE]
                for name in reader.names(key):
                    arr = reader.read(key, name)
                    assert arr.dtype == np.float32 and np.isfinite(arr).all()
                    n_views += 1
    assert report.images == 3 and report.views == n_views


def test_full_view_follows_the_teacher_rule(labelled):
    _, fmt, teacher, _ = labelled
    # depth-anything-v2: short side 518 (or full_size=), keep aspect, multiples of 14
    if fmt == "wds":
        assert teacher.full_view_size(620, 760) == (518, 630)
        assert teacher.full_view_size(300, 420) == (518, 728)
    else:
        assert teacher.full_view_size(620, 760) == (140, 168)


def test_manifest_records_provenance_and_shard_checksums(labelled, ckpt):
    ds, fmt, teacher, _ = labelled
    info = load_dataset(ds)
    manifest = ColumnManifest.load(info.layout.manifest("dav"))
    spec = parse_teacher_spec(spec_str("dav", ckpt, full_size=None if fmt == "wds" else 140))
    assert manifest.column == "dav"
    assert manifest.adapter == TEACHER
    assert manifest.weights == {"source": str(ckpt), "sha256": resolve_teacher(spec).weights_sha256}
    assert manifest.weights["sha256"] == teacher.weights_sha256
    assert manifest.output_kind == "disparity" and manifest.invariance == "affine"
    assert manifest.input_rule == teacher.input_rule and manifest.input_rule
    assert manifest.precision == "fp32"  # CPU runs fp32 whatever is asked (default bf16)
    assert manifest.codec == get_codec("pcodec-f16").describe()
    assert manifest.backend == fmt
    assert manifest.plan_sha256 == info.plan_hash
    assert manifest.code_version == pipeline.__version__
    assert manifest.extra == {"options": dict(spec.options)}
    assert sorted(manifest.shards) == ["000000", "000001"]
    for shard in info.shards:
        entry = manifest.shards[shard.name]
        path = LabelColumn(info, "dav").shard_path(shard.index)
        assert entry["status"] == "done"
        assert entry["count"] == shard.count
        assert entry["sha256"] == shard_checksum(path)
        assert entry["bytes"] == shard_nbytes(path)
        assert entry["weights_sha256"] == teacher.weights_sha256
        assert entry["failures"] == [] and entry["flags"] == {}
        with open_reader(path) as reader:
            pixels = sum(
                int(np.prod(stats["shape"]))
                for key in reader.keys
                for stats in reader.record(key)["maps"].values()
            )
            assert reader.extra_meta == {"column": "dav", "shard": shard.name}
        assert entry["pixels"] == pixels


def test_verify_is_ok_and_nothing_temporary_is_left(labelled):
    ds, _, _, _ = labelled
    report = verify_dataset(ds, progress=False)
    assert report.ok, report.problems
    assert report.maps > 0
    assert temporaries(ds) == []


# ---- label values --------------------------------------------------------------------------


def test_views_are_the_planned_boxes(base_dataset, ckpt):
    info = load_dataset(base_dataset)
    teacher = load_teacher(parse_teacher_spec(spec_str("dav", ckpt)))
    plan = load_plan_shard(info.layout.plan_shard(0))
    ((key, rgb, _),) = list(read_image_shard(info.layout.image_shard(0)))
    built = build_views(rgb, plan[key], TILE, teacher.full_view_size, teacher.interpolation)
    assert list(built) == ["full", *(name for name, _ in views(plan[key]))]
    assert tuple(built["full"].shape) == (3, *teacher.full_view_size(*rgb.shape[:2]))
    for name, (x0, y0, x1, y1) in views(plan[key]):
        assert tuple(built[name].shape) == (3, TILE, TILE)
        if x1 - x0 == TILE:  # a regular tile is a native-resolution crop
            crop = np.ascontiguousarray(rgb[y0:y1, x0:x1].transpose(2, 0, 1))
            assert np.array_equal(built[name].numpy(), crop)
    assert any(x1 - x0 == TILE for _, (x0, _, x1, _) in views(plan[key]))


def test_stored_labels_equal_a_direct_teacher_forward(reference, ckpt):
    """Every stored map of every key equals `teacher.predict` of the same view, one at a time,
    within float16 storage precision: batching across images never mixes up views."""
    info = load_dataset(reference)
    teacher = load_teacher(parse_teacher_spec(spec_str("dav", ckpt)))
    expected: dict[str, dict[str, np.ndarray]] = {}
    stored: dict[str, dict[str, np.ndarray]] = {}
    for shard in info.shards:
        plan = load_plan_shard(info.layout.plan_shard(shard.index))
        path = info.layout.label_shard("dav", shard.index, ".tar")
        with open_reader(path) as reader:
            for key, rgb, _ in read_image_shard(info.layout.image_shard(shard.index)):
                built = build_views(
                    rgb, plan[key], TILE, teacher.full_view_size, teacher.interpolation
                )
                assert reader.names(key) == list(built)
                expected[key] = {
                    n: teacher.predict(v[None].float() / 255)[0, 0].numpy()
                    for n, v in built.items()
                }
                stored[key] = {n: reader.read(key, n) for n in built}
    assert len(expected) == 3
    for key, maps in expected.items():
        for name, want in maps.items():
            got = stored[key][name]
            assert got.shape == want.shape
            scale = float(np.abs(want).max())
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-3 * scale, err_msg=key + name)
    # The check would catch a mix-up: the same view name of another image differs a lot.
    keys = sorted(expected)
    for a, b in zip(keys, keys[1:] + keys[:1], strict=True):
        diff = np.abs(stored[a]["r0.sc"] - expected[b]["r0.sc"]).max()
        assert diff > 1e-2 * float(np.abs(expected[b]["r0.sc"]).max())
