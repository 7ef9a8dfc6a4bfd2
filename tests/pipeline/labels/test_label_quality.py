"""Flags counted per map and per key, the rule "too many unusable maps" (`labels.quality`,
`LabelColumn.unusable_problem`), and the rule that a shard labelled for another dataset (other
sample count) is not usable."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import prepare_small, write_fake_column, write_photos
from label_helpers import key_maps, shard_path, write_shard

from pipeline.labels.column import OTHER_IMAGES, USABLE, LabelColumn
from pipeline.labels.manifest import ColumnManifest
from pipeline.labels.quality import MapCounts, check_max_unusable
from pipeline.labels.record import map_stats, map_unusable


def test_unusable_maps_teach_nothing():
    ramp = np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4)
    some_nan = ramp.copy()
    some_nan[0, 0] = np.nan
    assert not map_unusable(map_stats(ramp)) and not map_unusable(map_stats(some_nan))
    for bad in (np.full((3, 4), np.nan), np.full((3, 4), np.inf), np.full((3, 4), 2.5)):
        assert map_unusable(map_stats(bad.astype(np.float32)))


def test_flags_are_counted_per_map_and_per_key(tmp_path, backend):
    nan = {name: np.full_like(m, np.nan) for name, m in key_maps(1).items()}
    partly = key_maps(2)
    partly["r0.sc"] = partly["r0.sc"].copy()
    partly["r0.sc"][0, 0] = np.nan  # flagged, still usable
    content = {"a": key_maps(0), "b": nan, "c": partly, "d": "teacher failed"}
    summary = write_shard(shard_path(tmp_path, backend), backend, content)
    maps = sum(len(m) for m in (content["a"], nan, partly))
    assert summary.count == 4 and summary.maps == maps
    assert summary.flags == {"error": 1, "flat": 1, "nan": 2}  # keys
    assert summary.map_flags == {"flat": len(nan), "nan": len(nan) + 1}  # maps
    assert summary.unusable_maps == len(nan)
    entry = summary.manifest_entry()
    assert (entry["maps"], entry["map_flags"], entry["unusable_maps"]) == (
        maps,
        summary.map_flags,
        len(nan),
    )
    counts = MapCounts.of({"000000": entry})
    assert counts.describe() == (
        f"flat {len(nan)} of {maps} maps (1 of 4 images), "
        f"nan {len(nan) + 1} of {maps} maps (2 of 4 images)"
    )
    assert counts.describe_unusable().startswith(f"{len(nan)} of {maps} maps (")


def test_the_unusable_rule_and_its_threshold():
    def counts(unusable: int, maps: int = 10) -> MapCounts:
        return MapCounts.of({"000000": {"maps": maps, "unusable_maps": unusable, "count": 2}})

    assert not counts(5).too_many_unusable()  # half is not "mostly"
    assert counts(6).too_many_unusable()
    assert counts(1).too_many_unusable(0.0) and not counts(10).too_many_unusable(1.0)
    assert not counts(0, maps=0).too_many_unusable(0.0)  # nothing counted, nothing to refuse
    assert counts(6).unusable_shards == ["000000"] and counts(0).unusable_shards == []
    with pytest.raises(ValueError, match="--max-unusable must be a fraction between 0 and 1"):
        check_max_unusable(1.5)


def test_entries_without_map_counts_stay_readable(tmp_path):
    old = {"status": "done", "count": 3, "failures": [], "sha256": "f" * 64, "bytes": 10}
    old.update(pixels=30, flags={"nan": 1})
    counts = MapCounts.of({"000000": old})
    assert counts.unknown == ["000000"] and counts.maps == 0
    assert not counts.too_many_unusable(0.0)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quality")
    ds = prepare_small(write_photos(root / "photos"), root / "ds", shard_size=2)
    write_fake_column(ds, "dav")
    return ds


@pytest.fixture
def ds(base: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "ds"))


def _edit(column: LabelColumn, edit) -> None:
    manifest = ColumnManifest.load(column.manifest_path)
    edit(manifest)
    manifest.save(column.manifest_path)
    column.reload()


def test_unusable_problem_names_the_column_teacher_shards_and_fix(ds: Path) -> None:
    column = LabelColumn(ds, "dav")
    assert column.unusable_problem() is None and column.map_counts().unusable == 0

    def spoil(manifest: ColumnManifest) -> None:
        for name in ("000000", "000001"):
            entry = manifest.shards[name]
            entry.update(unusable_maps=entry["maps"], map_flags={"nan": entry["maps"]})

    _edit(column, spoil)
    counts = column.map_counts()
    assert counts.too_many_unusable() and counts.unusable_shards == ["000000", "000001"]
    problem = column.unusable_problem()
    assert problem.startswith("label column 'dav' (teacher fake:none; ")
    assert "in shards 000000-000001, more than the 50% allowed (--max-unusable 0.5)" in problem
    assert problem.endswith("--redo 000000-000001 --overwrite")
    assert "(--set data.max_unusable=0.5)" in column.unusable_problem(0.5, "data.max_unusable")
    assert column.unusable_problem(1.0) is None


def test_a_shard_with_another_sample_count_is_foreign(ds: Path) -> None:
    column = LabelColumn(ds, "dav")
    assert [c.status for c in column.check_shards()] == [USABLE] * 3
    _edit(column, lambda m: m.shards["000001"].update(count=7))
    check = column.check_shards()[1]
    assert check.status == OTHER_IMAGES and "copied from another dataset" in check.describe()
    assert not column.other_plan()
    _edit(column, lambda m: setattr(m, "plan_sha256", "9" * 64))
    assert column.other_plan()
