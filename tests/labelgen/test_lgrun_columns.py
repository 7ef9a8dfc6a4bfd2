"""Label columns are independent and idempotent: adding a teacher writes only its column, a
finished teacher is not even loaded, changed weights under one name are refused unless
`--overwrite`, which then relabels."""

from __future__ import annotations

import json
import shutil

import pytest
from lgrun_helpers import (
    column_bytes,
    copy_dataset,
    forget_shard,
    label,
    spec_str,
    tree_snapshot,
)

import labelgen.run
from labelgen.teachers import resolve_teacher
from pipeline.dataset.verify import verify_dataset
from pipeline.labels.manifest import ColumnManifest


@pytest.fixture
def labelled(reference, tmp_path):
    """A private copy of the reference dataset (column `dav` done)."""
    return copy_dataset(reference, tmp_path / "ds")


def no_loading(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the teacher was loaded although every shard is done")

    monkeypatch.setattr(labelgen.run, "load_teacher", refuse)


def test_adding_a_teacher_leaves_the_other_column_untouched(labelled, tiny_ckpt):
    before = tree_snapshot(labelled / "labels" / "dav")
    assert "manifest.json" in before and "000000.tar" in before
    (report,) = label(labelled, [spec_str("other", tiny_ckpt(1))])
    assert report.shards_done == ["000000", "000001", "000002"]
    assert tree_snapshot(labelled / "labels" / "dav") == before  # bytes and mtimes
    assert sorted(p.name for p in (labelled / "labels").iterdir()) == ["dav", "other"]
    check = verify_dataset(labelled, progress=False)
    assert check.ok, check.problems


def test_rerunning_a_finished_teacher_does_nothing_and_says_so(labelled, ckpt, monkeypatch):
    before = tree_snapshot(labelled / "labels")
    no_loading(monkeypatch)
    (report,) = label(labelled, [spec_str("dav", ckpt)])
    assert report.shards_done == [] and report.shards_skipped == 3
    assert report.summary() == "dav: nothing to do (3 shards already done)"
    assert tree_snapshot(labelled / "labels") == before


def test_moved_checkpoint_with_the_same_weights_is_still_done(
    labelled, ckpt, tmp_path, monkeypatch
):
    moved = shutil.copytree(ckpt, tmp_path / "moved")
    no_loading(monkeypatch)
    (report,) = label(labelled, [spec_str("dav", moved)])
    assert "nothing to do" in report.summary()


def test_changed_weights_in_the_same_directory_are_refused_then_overwritten(
    labelled, ckpt, tiny_ckpt, tmp_path
):
    source = shutil.copytree(ckpt, tmp_path / "ckpt")
    old_sha = resolve_teacher(spec_str("dav", source)).weights_sha256
    # Same name, same source directory, new weights (another seed written into it).
    shutil.rmtree(source)
    shutil.copytree(tiny_ckpt(1), source)
    new_sha = resolve_teacher(spec_str("dav", source)).weights_sha256
    assert new_sha != old_sha
    before = tree_snapshot(labelled / "labels")
    with pytest.raises(ValueError) as err:
        label(labelled, [spec_str("dav", source)])
    message = str(err.value)
    assert "'dav'" in message and "other weights" in message and "--overwrite" in message
    assert old_sha[:12] in message and new_sha[:12] in message
    assert tree_snapshot(labelled / "labels") == before

    (report,) = label(labelled, [spec_str("dav", source)], overwrite=True)
    assert report.shards_done == ["000000", "000001", "000002"]
    manifest = ColumnManifest.load(labelled / "labels" / "dav" / "manifest.json")
    assert manifest.weights == {"source": str(source), "sha256": new_sha}
    assert {e["weights_sha256"] for e in manifest.shards.values()} == {new_sha}
    assert all(e["status"] == "done" for e in manifest.shards.values())
    old_files = {k: v[0] for k, v in before.items() if k.startswith("dav/")}
    new_files = column_bytes(labelled / "labels" / "dav")
    for name in ("000000.tar", "000001.tar", "000002.tar"):
        assert new_files[name] != old_files[f"dav/{name}"]
    check = verify_dataset(labelled, progress=False)
    assert check.ok, check.problems
    # ... and now the new weights are the column's: a plain re-run has nothing to do.
    (again,) = label(labelled, [spec_str("dav", source)])
    assert "nothing to do" in again.summary()


def test_same_name_pointing_at_other_weights_is_refused(labelled, tiny_ckpt):
    with pytest.raises(ValueError, match="other weights.*--overwrite"):
        label(labelled, [spec_str("dav", tiny_ckpt(1))])


def test_other_teacher_options_are_refused(dataset, ckpt):
    """Maps of one column come from one teacher setup (not, say, two `full` sizes)."""
    first, second = {"RANK": "0", "WORLD_SIZE": "3"}, {"RANK": "1", "WORLD_SIZE": "3"}
    label(dataset, [spec_str("dav", ckpt)], env=first)
    with pytest.raises(ValueError, match="other teacher options.*--overwrite"):
        label(dataset, [spec_str("dav", ckpt, full_size=112)], env=second)
    (report,) = label(dataset, [spec_str("dav", ckpt)], env=second)
    assert report.shards_done == ["000001"]


def test_two_teachers_in_one_run_write_two_columns(dataset, ckpt, tiny_ckpt):
    specs = [spec_str("one", ckpt), spec_str("two", tiny_ckpt(1))]
    reports = label(dataset, specs, env={"RANK": "1", "WORLD_SIZE": "3"})  # shard 1 only
    assert [r.column for r in reports] == ["one", "two"]
    assert [r.shards_done for r in reports] == [["000001"], ["000001"]]
    assert verify_dataset(dataset, progress=False).ok


def test_refused_first_teacher_stops_the_run_before_the_next_one_writes(labelled, ckpt, tiny_ckpt):
    with pytest.raises(ValueError, match="other weights"):
        label(labelled, [spec_str("dav", tiny_ckpt(1)), spec_str("next", ckpt)])
    assert not (labelled / "labels" / "next").exists()


# ---- codec / backend changes of a finished column ---------------------------------------------


def test_overwrite_with_another_backend_relabels_a_finished_column(labelled, ckpt):
    (report,) = label(labelled, [spec_str("dav", ckpt)], format="zarr", overwrite=True)
    assert report.shards_done == ["000000", "000001", "000002"]
    manifest = json.loads((labelled / "labels" / "dav" / "manifest.json").read_text())
    assert manifest["backend"] == "zarr"
    assert (labelled / "labels" / "dav" / "000000.zarr").is_dir()
    assert verify_dataset(labelled, progress=False).ok


def test_another_codec_on_a_finished_column_is_refused(labelled, ckpt):
    with pytest.raises(ValueError, match="--overwrite"):
        label(labelled, [spec_str("dav", ckpt)], codec="blosc-zstd-f16")


def test_overwrite_with_another_backend_on_a_partly_done_column_stays_consistent(labelled, ckpt):
    forget_shard(labelled, "dav", "000001")  # partly done: shards 0 and 2
    label(labelled, [spec_str("dav", ckpt)], format="zarr", overwrite=True)
    check = verify_dataset(labelled, progress=False)
    assert check.ok, check.problems
