"""`student.data.stream`: lockstep reading, order, splits, teachers, errors (in-process)."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import (
    all_keys,
    constant,
    copy_dataset,
    edit_manifest,
    two_column_dataset,
    write_column,
)

from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard, plan_shard_bytes
from pipeline.toolkit import tario
from pipeline.toolkit.tario import ShardError
from student.config import DataSettings
from student.data import schedule as sch
from student.data import shards as shards_module
from student.data.augment import AugmentSettings
from student.data.stream import DistillStream, steps_per_epoch

S = 56


pytestmark = pytest.mark.usefixtures("no_launcher_env")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return two_column_dataset(tmp_path_factory.mktemp("stream"))


@pytest.fixture
def ds(base: Path, tmp_path: Path) -> Path:
    return copy_dataset(base, tmp_path / "ds")


DATA = {f.name for f in fields(DataSettings)}


def stream(ds: Path, teachers=("a", "b"), **kw) -> DistillStream:
    """A rank-0-of-1 stream of S-pixel batches of one; `kw` holds `DataSettings` fields and the
    stream's own keywords."""
    data = DataSettings(**{"size": S, **{k: kw.pop(k) for k in DATA & set(kw)}})
    kw.setdefault("batch_size", 1)
    kw = {"rank": 0, "world": 1, **kw}
    return DistillStream(ds, list(teachers), data, **kw)


def keys(batches) -> list[str]:
    return [k for b in batches for k in b["key"]]


def test_batches_and_one_teacher_per_batch(base: Path) -> None:
    s = stream(base, batch_size=2, teacher_weights=[1, 1])
    batches = list(s)
    assert len(batches) == len(s) == 2 == steps_per_epoch(base, ["a", "b"], world=1, batch_size=2)
    for step, b in enumerate(batches):
        assert b["step"] == step and b["epoch"] == 0
        assert len(set(b["teacher"])) == 1
        assert b["teacher_index"].tolist() == [s.teachers.index(b["teacher"][0])] * 2
        assert tuple(b["image_aug"].shape) == (2, 3, S, S) and b["valid"].dtype == torch.bool
        tmax = int(b["tile_count"].max())
        assert tuple(b["tiles"].shape) == (2, tmax, S, S)
        assert tuple(b["tile_boxes"].shape) == (2, tmax, 4)
        assert (b["tile_boxes"] >= 0).all() and (b["tile_boxes"] <= S).all()


def test_weights_pick_teachers(base: Path) -> None:
    only_b = stream(base, teacher_weights=[0, 1])
    assert {t for b in only_b for t in b["teacher"]} == {"b"}  # also reads the zarr column
    per_sample = stream(base, batch_size=5, per_sample_teacher=True, seed=1)
    teachers = [t for e in range(4) for t in _epoch(per_sample, e)[0]["teacher"]]
    assert set(teachers) == {"a", "b"}


def test_accumulated_micro_batches_share_their_teacher(base: Path) -> None:
    plain = stream(base, teacher_weights=[1, 1], seed=2)
    s = stream(base, teacher_weights=[1, 1], seed=2, accumulate=2)
    assert len(s) == len(plain) - len(plain) % 2
    teachers = [b["teacher"][0] for b in s]
    pairs = [teachers[i : i + 2] for i in range(0, len(s), 2)]
    assert all(a == b for a, b in pairs)
    with pytest.raises(ValueError, match="accumulate = 1 × 1 × 99"):
        stream(base, accumulate=99)


def _epoch(s: DistillStream, epoch: int) -> list[dict]:
    s.set_epoch(epoch)
    return list(s)


@pytest.mark.parametrize("backend", ["wds", "zarr"])
def test_lockstep_mismatch_names_shard_and_key(ds: Path, backend: str) -> None:
    write_column(ds, "c", backend=backend, reverse_keys=[1])
    suffix = ".tar" if backend == "wds" else ".zarr"
    pattern = rf"shard 000001: keys of .*c/000001\{suffix} .*position 0"
    with pytest.raises(ShardError, match=pattern):
        list(stream(ds, ["a", "c"]))


def test_same_seed_and_epoch_reproduce_the_stream(base: Path) -> None:
    first, second = list(stream(base, seed=5)), list(stream(base, seed=5))
    assert keys(first) == keys(second)
    for a, b in zip(first, second, strict=True):
        for name in ("image", "image_aug", "sc", "tiles", "tile_boxes", "region", "flip"):
            assert torch.equal(a[name], b[name]), name
        assert a["teacher"] == b["teacher"]
    assert sorted(keys(first)) == sorted(all_keys(base))


def test_epochs_shuffle_differently(base: Path) -> None:
    s = stream(base)
    orders = [keys(_epoch(s, e)) for e in range(4)]
    assert all(sorted(o) == sorted(all_keys(base)) for o in orders)
    assert len({tuple(o) for o in orders}) > 1
    flips = [b["flip"].item() for e in range(4) for b in _epoch(s, e)]
    assert 0 < sum(flips) < len(flips)


def test_two_ranks_disjoint_and_equal_steps(base: Path) -> None:
    r0 = list(stream(base, rank=0, world=2))
    r1 = list(stream(base, rank=1, world=2))
    assert len(r0) == len(r1) == 2  # floor(5 / 2)
    assert not set(keys(r0)) & set(keys(r1))
    assert [b["teacher"] for b in r0] == [b["teacher"] for b in r1]  # one teacher per iteration
    with pytest.raises(ValueError, match="fewer than"):
        stream(base, world=2, batch_size=3)


def test_resume_skips_without_decoding(base: Path, monkeypatch) -> None:
    """The skipped samples' images and label maps are never decoded: a resumed stream decodes
    exactly what the samples it yields need, the same reads as an uninterrupted stream's last
    samples."""
    calls: dict[str, list] = {"image": [], "read": []}
    for name in calls:
        real = getattr(shards_module.OpenShard, name)

        def counting(self, *a, _name=name, _real=real, **k):
            calls[_name].append(a if _name == "read" else a[0])  # (teacher, key, map) / key
            return _real(self, *a, **k)

        monkeypatch.setattr(shards_module.OpenShard, name, counting)
    full = list(stream(base, seed=3))
    full_reads = list(calls["read"])
    assert len(calls["image"]) == len(full) and len(full_reads) >= len(full)
    calls["image"].clear(), calls["read"].clear()
    resumed = stream(base, seed=3)
    resumed.load_state_dict({"epoch": 0, "batches": 2})
    tail = list(resumed)
    assert len(calls["image"]) == len(tail) == len(full) - 2
    reads = calls["read"]
    assert 0 < len(reads) < len(full_reads) and reads == full_reads[-len(reads) :]
    assert {key for _, key, _ in reads} == set(keys(tail))
    assert keys(tail) == keys(full[2:])
    for a, b in zip(tail, full[2:], strict=True):
        assert torch.equal(a["image_aug"], b["image_aug"]) and a["step"] == b["step"]
    assert resumed.state_dict()["epoch"] == 1 and resumed.state_dict()["batches"] == 0


def test_state_dict_counts_consumed_batches(base: Path) -> None:
    s = stream(base)
    it = iter(s)
    next(it), next(it)
    state = {"epoch": 0, "batches": 2, "seed": 0, "world": 1, "batch_size": 1, "workers": 1}
    assert s.state_dict() == state
    s.set_epoch(1)
    assert s.state_dict()["batches"] == 0


def test_resuming_with_another_worker_count_warns(base: Path, caplog) -> None:
    """The loader's workers split the samples, so their number is part of the position."""
    from student.data.loader import make_loader

    saved = stream(base)
    make_loader(saved, workers=2)
    state = saved.state_dict()
    assert state["workers"] == 2
    for workers, warned in ((2, False), (0, True)):
        resumed = stream(base)
        make_loader(resumed, workers=workers)
        caplog.clear()
        resumed.load_state_dict(state)
        assert ("resuming with workers=1 where the checkpoint had 2" in caplog.text) == warned


def test_error_keys_are_skipped_and_counted(ds: Path) -> None:
    write_column(ds, "c", backend="zarr", errors={"img2"})
    s = stream(ds, ["a", "c"])
    assert s.skipped == {"total": 1, "c": 1}
    assert len(s) == 4
    got = keys(s)
    assert sorted(got) == sorted(set(all_keys(ds)) - {"img2"})
    assert s.stats["skipped_label_errors"] == 1


def test_errors_missing_from_manifest_are_skipped_and_resampled(ds: Path, caplog) -> None:
    write_column(ds, "c", backend="wds", errors={"img2"})
    edit_manifest(ds, "c", lambda m: [e.update(failures=[]) for e in m["shards"].values()])
    s = stream(ds, ["a", "c"])
    assert len(s) == 5 and s.skipped == {}
    with caplog.at_level(logging.WARNING, logger="student.data.stream"):
        got = keys(s)
    assert len(got) == 5 and "img2" not in got  # a resampled key makes up for it
    assert s.stats["skipped_unlisted_errors"] >= 1
    assert "img2" in caplog.text and "resampling" in caplog.text


def test_baseline_batches_have_the_whole_image_and_no_tiles(base: Path) -> None:
    batches = list(stream(base, mode="baseline", batch_size=2))
    for b in batches:
        assert b["tile_count"].tolist() == [0, 0] and b["region"].tolist() == [-1, -1]
        assert tuple(b["tiles"].shape) == (2, 0, S, S) and tuple(b["sc"].shape) == (2, 1, S, S)


def test_metric_depth_column_becomes_disparity(ds: Path) -> None:
    write_column(ds, "m", kind="metric_depth", invariance="metric", maps=constant(2.0))
    # Constant maps are unusable for training (one value everywhere): accepted here on purpose.
    b = next(iter(stream(ds, ["m"], augment=AugmentSettings.none(), max_unusable=1.0)))
    assert torch.allclose(b["sc"], torch.full_like(b["sc"], 0.5))
    assert torch.allclose(b["tiles"][:, : int(b["tile_count"][0])], torch.tensor(0.5))


def test_teacher_schedule_is_shared_by_ranks_and_workers(base: Path) -> None:
    s = stream(base, batch_size=1, teacher_weights=[3, 1], seed=9)
    expected = [s.teachers[sch.teacher_for_step(s.probabilities, 9, 0, i)] for i in range(len(s))]
    assert [b["teacher"][0] for b in s] == expected


def test_max_tiles_and_tile_labels_match_their_boxes(base: Path) -> None:
    """x-ramp labels: every tile equals the region label sampled inside its (flipped) box."""
    s = stream(base, batch_size=5, max_tiles=2, size=112)
    batch = next(iter(s))
    assert int(batch["tile_count"].max()) == 2
    for i in range(5):
        row = batch["sc"][i, 0].numpy().mean(0)
        for t in range(int(batch["tile_count"][i])):
            x0, _, x1, _ = batch["tile_boxes"][i, t].tolist()
            cols = np.arange(2, 110)
            expected = np.interp(x0 + (cols + 0.5) * (x1 - x0) / 112 - 0.5, np.arange(112), row)
            assert np.abs(batch["tiles"][i, t].numpy().mean(0)[cols] - expected).max() < 1.5


def test_rank_and_world_from_the_launcher(base: Path, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    s = DistillStream(base, ["a"], DataSettings(size=S), batch_size=1)
    assert (s.rank, s.world, len(s)) == (1, 2, 2)
    with pytest.raises(ValueError, match="rank 2"):
        DistillStream(base, ["a"], DataSettings(size=S), rank=2, world=2)


def test_resume_position_past_the_epoch_starts_the_next(base: Path) -> None:
    s = stream(base, batch_size=2)  # 2 steps
    s.load_state_dict({"epoch": 3, "batches": 2, "world": 4})  # e.g. saved with another world
    assert s.state_dict()["epoch"] == 4 and s.state_dict()["batches"] == 0
    assert [b["epoch"] for b in s] == [4, 4]


def test_plan_shard_out_of_lockstep(ds: Path) -> None:
    path = load_dataset(ds).layout.plan_shard(0)
    plans = load_plan_shard(path)
    path.write_bytes(plan_shard_bytes(dict(reversed(list(plans.items())))))
    with pytest.raises(ShardError, match=r"shard 000000: keys of .*plan/000000\.json"):
        list(stream(ds))


def test_corrupt_image_names_shard_and_key(ds: Path) -> None:
    path = load_dataset(ds).layout.image_shard(0)
    member = tario.scan(path)[0]
    with path.open("r+b") as f:  # the image's first bytes (its signature) overwritten
        f.seek(member.offset)
        f.write(b"\0" * 16)
    with pytest.raises(ShardError, match=rf"000000\.tar: key '{member.key}' .*does not decode"):
        list(stream(ds))
