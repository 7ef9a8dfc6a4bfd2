"""Teachers that take the focal length (Depth Pro) are given each view's by `labelgen run`: the
label of a view is the teacher's prediction at that view's fx, the record says which focal length
was used, whether it was estimated, and Depth Pro's own estimate against the full image's; other
teachers are labelled exactly as before (no `focal` field, `predict_with_focal` never called)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lgrun_helpers import label, spec_str, write_photos
from typer.testing import CliRunner

from labelgen.batching import OrderedBatcher
from labelgen.teachers import load_teacher, write_tiny_checkpoint
from labelgen.teachers.base import Teacher
from labelgen.views import build_views, focal_record, view_scales
from pipeline.cli import app as pipeline_app
from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.images.decode import decode_rgb
from pipeline.images.shards import ImageShardReader
from pipeline.labels.store import open_reader
from pipeline.toolkit.launch import Launch

PHOTOS = {"a": (300, 420), "b": (400, 380)}
FP32 = Launch(workers=0, progress=False, precision="fp32")


@pytest.fixture(scope="module")
def focal_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """Two photos in one shard, a camera for `a` only, small tiles (regions of different sizes:
    views of different focal lengths), labelled by a tiny Depth Pro (float32 labels, so a stored
    map is the teacher's output bit for bit)."""
    root = tmp_path_factory.mktemp("focal")
    folder = write_photos(root / "photos", PHOTOS)
    table = root / "cams.csv"
    table.write_text("key,fx,fy,cx,cy\na,300,310,200.5,150.25\n")
    settings = PrepareSettings(
        shard_size=2, tile=64, min_region=80, regions=2, intrinsics=str(table)
    )
    dataset = prepare([str(folder)], root / "ds", settings, progress=False, workers=1).out
    ckpt = write_tiny_checkpoint("depth-pro", root / "dp")
    (report,) = label(dataset, [f"dp=depth-pro:{ckpt}"], codec="pcodec-f32", launch=FP32)
    assert report.shards_done == ["000000"] and not report.shards_failed
    return dataset, ckpt


def _shard(dataset: Path, column: str):
    return open_reader(next((dataset / "labels" / column).glob("000000.*")))


def _views(dataset: Path, teacher: Teacher, key: str) -> dict[str, torch.Tensor]:
    """The views `labelgen run` gives the teacher for `key`, as float RGB in [0,1]."""
    info = load_dataset(dataset)
    plan = load_plan_shard(info.layout.plan_shard(0))
    rgb = decode_rgb(ImageShardReader(info.layout.image_shard(0)).read(key)[0])
    views = build_views(
        rgb, plan[key], info.plan_params.tile, teacher.full_view_size, teacher.interpolation
    )
    return {name: view[None].float().div_(255.0) for name, view in views.items()}


def _batched(dataset: Path, teacher: Teacher, f_px, predict=None) -> dict[tuple[str, str], tuple]:
    """`(key, view) -> (depth [H,W], focal used, estimated)` of `predict_with_focal` (or of
    `predict(batch)`) over the batches `labelgen run --batch-size 4` forms: the views of equal
    size in key order, four at a time (a batch's size changes the last bits of a forward), each
    view at `f_px(key, view)`."""
    queues: dict[tuple, list] = {}
    for key in PHOTOS:
        for name, x in _views(dataset, teacher, key).items():
            queues.setdefault(tuple(x.shape), []).append((key, name, x))
    out = {}
    for items in queues.values():
        for i in range(0, len(items), 4):
            chunk = items[i : i + 4]
            batch = torch.cat([x for _, _, x in chunk])
            focals = [f_px(key, name) for key, name, _ in chunk]
            if predict is None:
                depth, used, estimated = teacher.predict_with_focal(batch, f_px=focals)
            else:
                depth, used, estimated = (
                    predict(batch),
                    [math.nan] * len(chunk),
                    [False] * len(chunk),
                )
            for j, (key, name, _) in enumerate(chunk):
                out[key, name] = depth[j, 0].numpy(), float(used[j]), bool(estimated[j])
    return out


def test_each_views_label_is_the_teacher_at_that_views_focal_length(focal_dataset):
    dataset, ckpt = focal_dataset
    teacher = load_teacher(f"dp=depth-pro:{ckpt}")
    with _shard(dataset, "dp") as reader:
        records = {key: reader.record(key) for key in PHOTOS}

        def f_px(key: str, name: str) -> float | None:
            camera = records[key].get("intrinsics")
            return None if camera is None else camera[name]["fx"]

        record = records["a"]
        assert set(record["focal"]) == set(record["maps"]) == set(record["intrinsics"])
        fxs = {f_px("a", name) for name in record["maps"]}
        assert len(fxs) >= 3  # full, two regions (and native tiles): a mix-up would show
        expected = _batched(dataset, teacher, f_px)
        assert {key for key, _ in expected} == set(PHOTOS)
        for (key, name), (depth, used, estimated) in expected.items():
            entry = records[key]["focal"][name]
            assert entry["f_px"] == used and entry["estimated"] is estimated
            assert np.array_equal(reader.read(key, name), depth), (key, name)
        for name in record["maps"]:  # a's camera was given, never estimated
            assert record["focal"][name]["f_px"] == f_px("a", name)
            assert record["focal"][name]["estimated"] is False
        # one view alone at its focal length: the same map up to the batch's last bits
        alone = teacher.predict_with_focal(
            _views(dataset, teacher, "a")["r0.sc"], f_px("a", "r0.sc")
        )
        np.testing.assert_allclose(reader.read("a", "r0.sc"), alone[0][0, 0], rtol=1e-5)
        wrong = teacher.predict_with_focal(
            _views(dataset, teacher, "a")["r0.sc"], f_px("a", "r0.t0")
        )
        assert not np.allclose(reader.read("a", "r0.sc"), wrong[0][0, 0], rtol=1e-3)


def test_a_view_without_a_camera_is_labelled_at_the_estimated_focal_length(focal_dataset):
    dataset, ckpt = focal_dataset
    teacher = load_teacher(f"dp=depth-pro:{ckpt}")
    with _shard(dataset, "dp") as reader:
        record = reader.record("b")
        assert "intrinsics" not in record and set(record["focal"]) == set(record["maps"])
        for name, x in _views(dataset, teacher, "b").items():
            entry = record["focal"][name]
            assert entry["estimated"] is True
            assert entry["f_px"] == entry["estimate_px"] > 0
            _, used, estimated = teacher.predict_with_focal(x)
            assert bool(estimated[0])
            assert entry["f_px"] == pytest.approx(float(used[0]), rel=1e-5)


def test_depth_pros_own_estimate_and_its_ratio_to_the_full_images_are_recorded(focal_dataset):
    dataset, ckpt = focal_dataset
    teacher = load_teacher(f"dp=depth-pro:{ckpt}")
    info = load_dataset(dataset)
    plan = load_plan_shard(info.layout.plan_shard(0))
    with _shard(dataset, "dp") as reader:
        for key in PHOTOS:
            record = reader.record(key)
            scales = view_scales(plan[key], info.plan_params.tile, teacher.full_view_size)
            full = record["focal"]["full"]["estimate_px"] / scales["full"]
            assert record["focal"]["full"]["estimate_ratio"] == pytest.approx(1.0, rel=1e-12)
            for name, entry in record["focal"].items():
                ratio = entry["estimate_ratio"]
                assert ratio is not None and math.isfinite(ratio) and ratio > 0
                assert ratio == pytest.approx(entry["estimate_px"] / scales[name] / full)
        # given a focal length, the model still reports its own estimate of the same view
        views = _views(dataset, teacher, "a")
        own = teacher.predict_with_estimate(views["r0.sc"], f_px=123.0)[3]
        assert reader.record("a")["focal"]["r0.sc"]["estimate_px"] == float(own[0])
    result = CliRunner().invoke(pipeline_app, ["verify", str(dataset), "--no-progress"])
    assert result.exit_code == 0, result.output


def test_a_teacher_without_takes_focal_is_labelled_as_before(focal_dataset, ckpt, monkeypatch):
    import shutil

    dataset = Path(shutil.copytree(focal_dataset[0], focal_dataset[0].parent / "plain"))

    def refuse(*args, **kwargs):
        raise AssertionError("predict_with_focal called for a teacher that ignores the focal")

    monkeypatch.setattr(Teacher, "predict_with_focal", refuse)
    (report,) = label(dataset, [spec_str("dav", ckpt)], codec="pcodec-f32", launch=FP32)
    assert report.shards_done == ["000000"] and not report.shards_failed
    teacher = load_teacher(spec_str("dav", ckpt))
    assert not teacher.takes_focal
    expected = _batched(dataset, teacher, lambda key, name: None, teacher.predict)
    with _shard(dataset, "dav") as reader:
        assert set(reader.record("a")) == {"kind", "maps", "flags", "error", "intrinsics"}
        assert set(reader.record("b")) == {"kind", "maps", "flags", "error"}  # no focal field
        for (key, name), (depth, _, _) in expected.items():
            assert np.array_equal(reader.read(key, name), depth), (key, name)


def test_the_batcher_gives_each_view_its_own_focal_length_across_mixed_batches():
    """Views of several images share batches (by size); each must get its own f_px back."""

    def predict(batch: torch.Tensor, f_px: torch.Tensor):
        depth = f_px.float().view(-1, 1, 1, 1).expand(-1, 1, *batch.shape[-2:]).clone()
        used = [{"f_px": float(v), "estimated": bool(v != v)} for v in f_px]
        return depth, used

    batcher = OrderedBatcher(predict, 3, takes_focal=True)
    done = []
    for i in range(4):
        views = {"full": torch.zeros(3, 8 + i, 9), "r0.sc": torch.zeros(3, 6, 6)}
        views["r0.t0"] = torch.zeros(3, 6, 6)
        focals = {"full": 100.0 + i, "r0.sc": 10.0 + i, "r0.t0": None if i == 2 else 20.0 + i}
        done += batcher.add(f"k{i}", views, focals=focals)
    done += batcher.flush()
    assert [d.key for d in done] == ["k0", "k1", "k2", "k3"]
    for i, d in enumerate(done):
        assert float(d.maps["full"][0, 0]) == 100.0 + i == d.focal["full"]["f_px"]
        assert float(d.maps["r0.sc"][0, 0]) == 10.0 + i
        if i == 2:
            assert d.focal["r0.t0"]["estimated"] and math.isnan(d.focal["r0.t0"]["f_px"])
        else:
            assert float(d.maps["r0.t0"][0, 0]) == 20.0 + i


def test_focal_record_scales_each_estimate_back_to_the_source_image():
    scales = {"full": 0.5, "r0.sc": 2.0, "r0.t0": 1.0}
    used = {
        "full": {"f_px": 50.0, "estimated": True, "estimate_px": 50.0},  # 100 px in the image
        "r0.sc": {"f_px": 200.0, "estimated": False, "estimate_px": 220.0},  # 110: ratio 1.1
        "r0.t0": {"f_px": float("nan"), "estimated": False, "estimate_px": float("nan")},
    }
    focal = focal_record(used, scales)["focal"]
    assert focal["full"]["estimate_ratio"] == 1.0
    assert focal["r0.sc"] == {
        "f_px": 200.0,
        "estimated": False,
        "estimate_px": 220.0,
        "estimate_ratio": pytest.approx(1.1),
    }
    assert focal["r0.t0"] == {
        "f_px": None,
        "estimated": False,
        "estimate_px": None,
        "estimate_ratio": None,
    }
    assert focal_record({}, scales) == {}
