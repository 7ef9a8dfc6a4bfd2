"""Bad teacher outputs and failures during a run: flagged maps (NaN, Inf, flat, beyond float16),
a broken teacher whose every map is NaN (status, verify and train see it), an image whose
inference raises, and out-of-memory batches retried in halves."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from lgrun_helpers import colour_of, copy_dataset, label, make_dataset, spec_str, wrap_predict
from typer.testing import CliRunner

from pipeline.cli import app as pipeline_app
from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.dataset.status import dataset_status
from pipeline.dataset.verify import verify_dataset
from pipeline.labels.manifest import ColumnManifest
from pipeline.labels.store import open_reader

F16_MAX = float(np.finfo(np.float16).max)
runner = CliRunner()
SMALL = (200, 240)  # smaller than a tile: one region, one (resized) tile


def ramp(h: int, w: int) -> torch.Tensor:
    return torch.linspace(1.0, 2.0, w).expand(h, w).clone()


def corrupt(original, x: torch.Tensor) -> torch.Tensor:
    """Real outputs for photos; for solid colours a ramp spoiled in a colour-specific way."""
    out = original(x)
    for i in range(len(x)):
        colour = colour_of(x[i])
        if colour is None:
            continue
        h, w = out.shape[-2:]
        out[i, 0] = ramp(h, w)
        if colour == "red":
            out[i, 0, :2, :2] = float("nan")
        elif colour == "green":
            out[i, 0, 0, 0] = float("inf")
        elif colour == "blue":
            out[i, 0] = 2.5
        elif colour == "yellow":
            out[i, 0, 0, 0] = 1e6
    return out


@pytest.fixture(scope="module")
def flagged(ckpt, tmp_path_factory):
    """One shard of five keys: four spoiled in different ways by the teacher, one normal."""
    root = tmp_path_factory.mktemp("flags")
    photos = {
        "a_red": (*SMALL, "red"),
        "b_green": (*SMALL, "green"),
        "c_blue": (*SMALL, "blue"),
        "d_yellow": (*SMALL, "yellow"),
        "e_photo": (300, 420),
    }
    ds = make_dataset(root, photos, shard_size=5)
    with pytest.MonkeyPatch.context() as mp:
        wrap_predict(mp, corrupt)
        (report,) = label(ds, [spec_str("dav", ckpt)])
    return ds, report


def test_flags_are_recorded_per_key_and_counted_per_shard(flagged):
    ds, report = flagged
    assert report.shards_done == ["000000"] and report.failures == 0
    expected = {
        "a_red": ["nan"],
        "b_green": ["inf"],
        "c_blue": ["flat"],
        "d_yellow": ["clipped"],
        "e_photo": [],
    }
    with open_reader(ds / "labels" / "dav" / "000000.tar") as reader:
        assert list(reader.keys) == list(expected)
        for key, flags in expected.items():
            record = reader.record(key)
            assert record["flags"] == flags, key
            assert record["error"] is None
            for name, stats in record["maps"].items():  # every view of the key is spoiled
                if key == "a_red":
                    assert stats["nan"] == 4, name
                if key == "b_green":
                    assert stats["inf"] == 1, name
                if key == "c_blue":
                    assert stats["flat"] and stats["min"] == stats["max"] == 2.5
                if key == "d_yellow":
                    assert stats["clipped"] == 1 and stats["max"] == 1e6
        assert np.isnan(reader.read("a_red", "full")[:2, :2]).all()
        assert np.isposinf(reader.read("b_green", "r0.sc")[0, 0])
        assert reader.read("d_yellow", "r0.t0")[0, 0] == F16_MAX  # clipped to float16's range
        assert np.isfinite(reader.read("e_photo", "full")).all()
    entry = ColumnManifest.load(ds / "labels" / "dav" / "manifest.json").shards["000000"]
    assert entry["flags"] == {"clipped": 1, "flat": 1, "inf": 1, "nan": 1}
    assert entry["failures"] == []
    assert report.flags == {"clipped": 1, "flat": 1, "inf": 1, "nan": 1}
    # Maps are counted apart from images: each spoiled key has 3 maps (full, r0.sc, r0.t0).
    assert (entry["maps"], entry["unusable_maps"]) == (15, 3)
    assert entry["map_flags"] == {"clipped": 3, "flat": 3, "inf": 3, "nan": 3}
    assert (
        "flagged maps: clipped 3 of 15 maps (1 of 5 images), flat 3 of 15 maps (1 of 5 images), "
        "inf 3 of 15 maps (1 of 5 images), nan 3 of 15 maps (1 of 5 images)"
    ) in report.summary()
    assert "WARNING" not in report.summary()  # 3 of 15 unusable: below the threshold


def test_flagged_column_still_verifies(flagged):
    ds, _ = flagged
    check = verify_dataset(ds, progress=False)
    assert check.ok, check.problems
    assert "dav: flagged maps: clipped 3 of 15 maps (1 of 5 images)" in "\n".join(check.notes)
    # The threshold is the user's: 3 of 15 unusable maps (20%) fail a stricter one.
    strict = verify_dataset(ds, progress=False, max_unusable=0.1)
    assert not strict.ok and "3 of 15 maps (20%) unusable" in strict.problems[0]


# ---- a broken teacher: every output NaN --------------------------------------------------------


def nan_head_checkpoint(src: Path, out: Path) -> Path:
    """A copy of the tiny checkpoint `src` whose last head bias is NaN: every output is NaN."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, out)
    weights = out / "model.safetensors"
    state = load_file(str(weights))
    state["head.conv3.bias"] = torch.full_like(state["head.conv3.bias"], float("nan"))
    save_file(state, str(weights), metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def broken(ckpt, base_dataset, tmp_path_factory):
    """The base dataset (3 shards of 1 image) labelled by a teacher whose head bias is NaN."""
    root = tmp_path_factory.mktemp("broken")
    bad = nan_head_checkpoint(ckpt, root / "nan-ckpt")
    ds = copy_dataset(base_dataset, root / "ds")
    (report,) = label(ds, [spec_str("bad", bad)])
    return ds, report, bad


def test_a_nan_teacher_run_summary_counts_its_flagged_maps(broken):
    ds, report, _ = broken
    manifest = ColumnManifest.load(ds / "labels" / "bad" / "manifest.json")
    maps = sum(e["maps"] for e in manifest.shards.values())
    assert maps == report.views > 3  # every view is a map, and every map is NaN
    for entry in manifest.shards.values():
        assert entry["status"] == "done" and entry["flags"] == {"flat": 1, "nan": 1}
        assert entry["map_flags"] == {"flat": entry["maps"], "nan": entry["maps"]}
        assert entry["unusable_maps"] == entry["maps"]
    summary = report.summary()
    assert f"flagged maps: flat {maps} of {maps} maps (3 of 3 images), nan {maps} of {maps}" in (
        summary
    )
    assert f"WARNING {maps} of {maps} maps (100%) unusable" in summary
    assert "`pipeline verify` fails this column and `student train` refuses it" in summary


def test_status_shows_the_unusable_maps_of_a_nan_teacher(broken):
    ds, _, ckpt_dir = broken
    col = dataset_status(ds)["columns"]["bad"]
    assert col["done"] == 3 and col["maps"]["unusable"] == col["maps"]["maps"] > 0
    result = runner.invoke(pipeline_app, ["status", str(ds)])
    assert result.exit_code == 0, result.output
    maps = col["maps"]["maps"]
    row = next(line for line in result.output.splitlines() if line.startswith("bad "))
    assert row.split()[-1] == f"{maps}/{maps}"
    assert f"flagged maps: flat {maps} of {maps} maps (3 of 3 images)" in result.output
    assert "bad: UNUSABLE: label column 'bad'" in result.output
    assert str(ckpt_dir) in result.output


def test_verify_fails_a_nan_teacher_naming_it(broken):
    ds, _, ckpt_dir = broken
    report = verify_dataset(ds, progress=False)
    assert not report.ok and len(report.problems) == 1
    (problem,) = report.problems
    assert f"label column 'bad' (teacher depth-anything-v2:{ckpt_dir};" in problem
    assert "in shards 000000-000002" in problem
    assert "(100%) unusable (no finite value, or one value everywhere)" in problem
    assert "--max-unusable 0.5" in problem and "labelgen run" in problem
    result = runner.invoke(pipeline_app, ["verify", str(ds)])
    assert result.exit_code == 1 and "BAD label column 'bad'" in result.output
    result = runner.invoke(pipeline_app, ["verify", str(ds), "--max-unusable", "1"])
    assert result.exit_code == 0, result.output  # the threshold is the user's


def test_student_train_refuses_a_nan_teacher_column(broken, ckpt, tmp_path):
    from student.cli import app as student_app
    from student.data.columns import check_columns

    ds, _, _ = broken
    with pytest.raises(ValueError, match=r"label column 'bad' \(teacher depth-anything-v2:"):
        check_columns(ds, ["bad"])
    assert list(check_columns(ds, ["bad"], max_unusable=1.0)) == ["bad"]
    args = ["train", "--out", str(tmp_path / "run"), "--dataset", str(ds), "--teacher", "bad"]
    args += ["--init", str(ckpt), "--steps", "2", "--set", "data.workers=0"]
    result = runner.invoke(student_app, args)
    assert result.exit_code != 0
    assert "unusable" in result.output and "--set data.max_unusable=0.5" in result.output


# ---- an image whose inference raises -----------------------------------------------------------


def explode_on_magenta(original, x: torch.Tensor) -> torch.Tensor:
    if any(colour_of(v) == "magenta" for v in x):
        raise RuntimeError("teacher exploded")
    return original(x)


@pytest.fixture(scope="module")
def exploding(ckpt, tmp_path_factory):
    """Shards [a_bad, b_photo] and [c_photo, d_bad]; inference raises on the magenta keys."""
    root = tmp_path_factory.mktemp("explode")
    photos = {
        "a_bad": (*SMALL, "magenta"),
        "b_photo": (300, 420),
        "c_photo": (300, 420),
        "d_bad": (*SMALL, "magenta"),
    }
    ds = make_dataset(root, photos, shard_size=2)
    with pytest.MonkeyPatch.context() as mp:
        wrap_predict(mp, explode_on_magenta)
        (report,) = label(ds, [spec_str("dav", ckpt)])
    return ds, report


def check_failed_key_shard(ds, shard: str, bad: str, good: str) -> None:
    info = load_dataset(ds)
    index = int(shard)
    plan = load_plan_shard(info.layout.plan_shard(index))
    manifest = ColumnManifest.load(ds / "labels" / "dav" / "manifest.json")
    entry = manifest.shards[shard]
    assert entry["status"] == "done", entry.get("error")
    assert [f["key"] for f in entry["failures"]] == [bad]
    assert "teacher exploded" in entry["failures"][0]["error"]
    assert entry["flags"] == {"error": 1}
    with open_reader(info.layout.label_shard("dav", index, ".tar")) as reader:
        assert list(reader.keys) == list(plan)
        record = reader.record(bad)
        assert record["maps"] == {} and record["flags"] == ["error"]
        assert "inference failed" in record["error"] and "teacher exploded" in record["error"]
        assert reader.names(good) == ["full", *(n for n, _ in views(plan[good]))]
        assert reader.record(good)["error"] is None


def test_failing_image_is_recorded_and_the_shard_completes(exploding):
    ds, report = exploding
    check_failed_key_shard(ds, "000001", bad="d_bad", good="c_photo")
    assert "000001" in report.shards_done
    check = verify_dataset(ds, progress=False)
    assert check.ok, check.problems


def test_failing_first_image_of_a_shard_is_recorded_and_the_shard_completes(exploding):
    ds, report = exploding
    assert report.shards_failed == []
    check_failed_key_shard(ds, "000000", bad="a_bad", good="b_photo")


def test_failed_images_are_counted_in_the_report(exploding):
    ds, report = exploding
    # Only completed shards count.
    done_failures = sum(
        len(ColumnManifest.load(ds / "labels" / "dav" / "manifest.json").shards[s]["failures"])
        for s in report.shards_done
    )
    assert report.failures == done_failures >= 1
    assert f"{report.failures} failed images" in report.summary()


def test_image_whose_views_cannot_be_built_is_recorded(dataset, ckpt, monkeypatch):
    import labelgen.shard_job

    real = labelgen.shard_job.build_views

    def build(rgb, entry, *args, **kwargs):
        if list(entry["size"]) == [300, 420]:  # img1
            raise OSError("broken JPEG data")
        return real(rgb, entry, *args, **kwargs)

    monkeypatch.setattr(labelgen.shard_job, "build_views", build)
    (report,) = label(dataset, [spec_str("dav", ckpt)])
    assert report.shards_done == ["000000", "000001", "000002"] and report.failures == 1
    entry = ColumnManifest.load(dataset / "labels" / "dav" / "manifest.json").shards["000001"]
    assert entry["status"] == "done" and entry["count"] == 1
    assert entry["failures"] == [
        {"key": "img1", "error": "view building failed: OSError: broken JPEG data"}
    ]
    with open_reader(dataset / "labels" / "dav" / "000001.tar") as reader:
        assert reader.record("img1")["maps"] == {}
        assert reader.record("img1")["flags"] == ["error"]


# ---- out of memory -----------------------------------------------------------------------------


def test_out_of_memory_batches_are_retried_in_halves(
    base_dataset, reference, ckpt, tmp_path, caplog
):
    ds = copy_dataset(base_dataset, tmp_path / "ds")

    def small_memory(original, x):
        if len(x) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB (fake)")
        return original(x)

    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.WARNING, "labelgen"):
        sizes = wrap_predict(mp, small_memory)
        (report,) = label(ds, [spec_str("dav", ckpt)], batch_size=4)
    assert 4 in sizes  # a full batch was tried ...
    assert report.shards_done == ["000000", "000001", "000002"]
    assert report.failures == 0 and report.flags == {}
    assert "out-of-memory" in caplog.text
    info = load_dataset(ds)
    for shard in info.shards:
        name = f"{shard.name}.tar"
        with (
            open_reader(ds / "labels" / "dav" / name) as got,
            open_reader(reference / "labels" / "dav" / name) as want,
        ):
            assert list(got.keys) == list(want.keys)
            for key in want.keys:
                assert got.record(key)["error"] is None
                assert got.names(key) == want.names(key)
                for view in want.names(key):  # ... and every view is labelled as without OOM
                    a, b = got.read(key, view), want.read(key, view)
                    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-3 * np.abs(b).max())


def test_a_broken_device_stops_the_job_and_a_rerun_resumes(base_dataset, ckpt, tmp_path):
    """An error that poisons the CUDA context (here simulated) stops labelling at once, with
    the shard recorded as failed, instead of failing every later image; re-running finishes."""
    from labelgen.batching import DeviceFailure

    ds = copy_dataset(base_dataset, tmp_path / "ds")
    calls = {"n": 0}

    def breaks_once(original, x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return original(x)

    with pytest.MonkeyPatch.context() as mp:
        sizes = wrap_predict(mp, breaks_once)
        with pytest.raises(DeviceFailure, match="illegal memory access.*Re-run the same command"):
            label(ds, [spec_str("dav", ckpt)], batch_size=4)
    assert len(sizes) == 3  # nothing was tried after the failure
    manifest = ColumnManifest.load(ds / "labels" / "dav" / "manifest.json")
    statuses = {name: entry["status"] for name, entry in manifest.shards.items()}
    assert "failed" in statuses.values() and list(statuses.values()).count("failed") == 1
    (report,) = label(ds, [spec_str("dav", ckpt)], batch_size=4)
    assert report.failures == 0
    assert verify_dataset(ds).ok


def test_a_device_error_at_the_copy_back_stops_the_job(base_dataset, ckpt, tmp_path, monkeypatch):
    """A CUDA error can first surface when an encoding thread waits for a map's copy back."""
    from labelgen.batching import DeviceFailure, Done

    ds = copy_dataset(base_dataset, tmp_path / "ds")
    waits = {"n": 0}
    wait = Done.wait

    def fails_once(self):
        waits["n"] += 1
        if waits["n"] == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return wait(self)

    monkeypatch.setattr(Done, "wait", fails_once)
    with pytest.raises(DeviceFailure, match="illegal memory access.*Re-run the same command"):
        label(ds, [spec_str("dav", ckpt)], batch_size=4)
    manifest = ColumnManifest.load(ds / "labels" / "dav" / "manifest.json")
    assert [e["status"] for e in manifest.shards.values()] == ["failed"]  # no later shard tried
    monkeypatch.setattr(Done, "wait", wait)
    (report,) = label(ds, [spec_str("dav", ckpt)], batch_size=4)
    assert report.failures == 0 and verify_dataset(ds).ok
