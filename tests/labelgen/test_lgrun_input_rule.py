"""The input resampling is part of a column's identity: a column records the one its teacher
used; one labelled before labelgen followed the image processor (`interpolation: bilinear`, or
no such field) stays readable, and `labelgen run` refuses to add differently resampled labels to
it (before loading the teacher) until `--overwrite` relabels it."""

from __future__ import annotations

import pytest
from lgrun_helpers import copy_dataset, forget_shard, label, spec_str, tree_snapshot

import labelgen.run
from pipeline.dataset.verify import verify_dataset
from pipeline.labels.column import LabelColumn
from pipeline.labels.manifest import ColumnManifest
from pipeline.labels.store import open_reader


@pytest.fixture
def labelled(reference, tmp_path):
    """A private copy of the reference dataset (column `dav` done)."""
    return copy_dataset(reference, tmp_path / "ds")


def make_old(dataset, rule_change) -> None:
    """Rewrite column `dav`'s header as older code wrote it: `rule_change(input_rule)`."""
    path = dataset / "labels" / "dav" / "manifest.json"
    manifest = ColumnManifest.load(path)
    manifest.input_rule = rule_change(dict(manifest.input_rule))
    manifest.save(path)


OLD_RULES = {
    "bilinear": lambda rule: {**rule, "interpolation": "bilinear"},  # labelgen before this
    "no field": lambda rule: {k: v for k, v in rule.items() if k != "interpolation"},
    "empty": lambda rule: {},
}


def no_loading(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the teacher was loaded although the column is refused")

    monkeypatch.setattr(labelgen.run, "load_teacher", refuse)


def test_the_column_records_the_processors_resampling(reference):
    manifest = ColumnManifest.load(reference / "labels" / "dav" / "manifest.json")
    assert manifest.input_rule["interpolation"] == "bicubic"
    assert manifest.identity().interpolation == "bicubic"


@pytest.mark.parametrize("old", sorted(OLD_RULES))
def test_an_old_column_stays_readable(labelled, old):
    make_old(labelled, OLD_RULES[old])
    report = verify_dataset(labelled, progress=False)
    assert report.ok, report.problems
    column = LabelColumn(labelled, "dav")
    checks = column.check_shards()
    assert len(checks) == 3 and all(check.usable for check in checks)
    with open_reader(column.shard_path(0)) as reader:
        key = reader.keys[0]
        assert reader.read(key, "full").ndim == 2
    assert column.manifest.identity().interpolation == ("bilinear" if old == "bilinear" else None)


@pytest.mark.parametrize("partly_done", [False, True])
def test_labelling_an_old_bilinear_column_is_refused_then_overwritten(
    labelled, ckpt, monkeypatch, partly_done
):
    make_old(labelled, OLD_RULES["bilinear"])
    if partly_done:  # the missing shard would be the only bicubic one: refused as well
        forget_shard(labelled, "dav", "000001")
    before = tree_snapshot(labelled / "labels")
    with monkeypatch.context() as patch:
        no_loading(patch)
        with pytest.raises(ValueError) as err:
            label(labelled, [spec_str("dav", ckpt)])
    message = str(err.value)
    assert (
        "'dav'" in message and "another input resampling (bilinear there, bicubic now)" in message
    )
    assert "use a new teacher name, or --overwrite" in message
    assert tree_snapshot(labelled / "labels") == before

    (report,) = label(labelled, [spec_str("dav", ckpt)], overwrite=True)
    assert report.shards_done == ["000000", "000001", "000002"]
    manifest = ColumnManifest.load(labelled / "labels" / "dav" / "manifest.json")
    assert manifest.input_rule["interpolation"] == "bicubic"
    assert verify_dataset(labelled, progress=False).ok
    (again,) = label(labelled, [spec_str("dav", ckpt)])
    assert "nothing to do" in again.summary()


def test_a_new_name_labels_beside_the_old_column(labelled, ckpt):
    make_old(labelled, OLD_RULES["bilinear"])
    before = tree_snapshot(labelled / "labels" / "dav")
    (report,) = label(labelled, [spec_str("dav-bicubic", ckpt)])
    assert report.shards_done == ["000000", "000001", "000002"]
    assert tree_snapshot(labelled / "labels" / "dav") == before
    assert verify_dataset(labelled, progress=False).ok
