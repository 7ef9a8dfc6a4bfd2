"""Repairing a labelled column: a done shard whose file was deleted or truncated is relabelled by
the next `labelgen run`; `--redo` relabels named shards (one `pipeline verify` found corrupt, or
one recorded as failed) with the command `pipeline verify` prints. The repaired column is byte
for byte the uninterrupted one."""

from __future__ import annotations

import logging
import shlex

import pytest
from lgrun_helpers import column_bytes, copy_dataset, fail_shards, label, spec_str
from typer.testing import CliRunner

import labelgen.run
from labelgen.cli import app
from labelgen.settings import RunSettings
from labelgen.teachers import parse_teacher_spec
from pipeline.cli import app as pipeline_app
from pipeline.dataset import load_dataset
from pipeline.dataset.verify import verify_dataset
from pipeline.toolkit.launch import Launch

# The reference was labelled with these; batch composition changes float results in the last bits.
FAST = ["--batch-size", "4", "--workers", "0", "--no-progress"]


@pytest.fixture
def labelled(reference, tmp_path):
    """A private copy of the reference dataset, labelled by `dav` (3 wds shards)."""
    return copy_dataset(reference, tmp_path / "ds")


def _fixed_by_verify_command(ds, problem: str):
    """Run the `labelgen run ...` command a verify problem names (plus the test's fast flags)."""
    command = shlex.split(problem.split("relabel it: ", 1)[1])
    assert command[:2] == ["labelgen", "run"] and "--redo" in command
    # The batch size the column was labelled with is part of the command (label bytes need it).
    assert command[command.index("--batch-size") + 1] == "4"
    return CliRunner().invoke(app, [*command[1:], "--workers", "0", "--no-progress"])


def test_deleted_done_shard_is_relabelled_alone(labelled, reference, ckpt, caplog):
    column = labelled / "labels" / "dav"
    (column / "000001.tar").unlink()
    with caplog.at_level(logging.WARNING, logger="labelgen"):
        (report,) = label(labelled, [spec_str("dav", ckpt)])
    assert report.shards_done == ["000001"] and report.shards_skipped == 2
    assert f"{column / '000001.tar'} is listed as done in the manifest but missing" in caplog.text
    assert column_bytes(column) == column_bytes(reference / "labels" / "dav")
    assert verify_dataset(labelled, progress=False).ok


def test_truncated_done_shard_is_relabelled(labelled, reference, ckpt, caplog):
    column = labelled / "labels" / "dav"
    shard = column / "000002.tar"
    shard.write_bytes(shard.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="labelgen"):
        (report,) = label(labelled, [spec_str("dav", ckpt)])
    assert report.shards_done == ["000002"]
    assert f"{shard} has 1000 bytes, the manifest recorded" in caplog.text
    assert column_bytes(column) == column_bytes(reference / "labels" / "dav")
    (again,) = label(labelled, [spec_str("dav", ckpt)])
    assert again.summary() == "dav: nothing to do (3 shards already done)"


def test_redo_relabels_a_corrupt_shard_verify_names(labelled, reference, ckpt, monkeypatch):
    column = labelled / "labels" / "dav"
    shard = column / "000001.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only the checksum tells
    shard.write_bytes(bytes(data))
    (report,) = label(labelled, [spec_str("dav", ckpt)])
    assert report.shards_done == []  # sizes only: a plain run does not hash the shards

    (problem,) = verify_dataset(labelled, progress=False).problems
    assert "000001.tar" in problem and problem.endswith("--redo 000001")
    labelled_now = []
    real = labelgen.run.label_shard

    def spy(job, *args, **kwargs):
        labelled_now.append(job.out.name)
        return real(job, *args, **kwargs)

    monkeypatch.setattr(labelgen.run, "label_shard", spy)
    result = _fixed_by_verify_command(labelled, problem)
    assert result.exit_code == 0, result.output
    assert "dav: labelled 1 shards" in result.output and labelled_now == ["000001.tar"]
    assert column_bytes(column) == column_bytes(reference / "labels" / "dav")
    assert verify_dataset(labelled, progress=False).ok


def test_failed_shard_fails_verify_until_relabelled(dataset, reference, ckpt, monkeypatch):
    real = fail_shards(monkeypatch, "disk on fire", "000002")
    (report,) = label(dataset, [spec_str("dav", ckpt)])
    assert report.shards_failed == ["000002: RuntimeError: disk on fire"]
    monkeypatch.setattr(labelgen.run, "label_shard", real)

    check = verify_dataset(dataset, progress=False)
    assert not check.ok and len(check.problems) == 1
    problem = check.problems[0]
    assert "shard 000002 of column 'dav'" in problem and "RuntimeError: disk on fire" in problem
    result = CliRunner().invoke(pipeline_app, ["verify", str(dataset)])
    assert result.exit_code == 1 and "--redo 000002" in result.output

    fixed = _fixed_by_verify_command(dataset, problem)
    assert fixed.exit_code == 0, fixed.output
    assert "dav: labelled 1 shards" in fixed.output
    assert column_bytes(dataset / "labels" / "dav") == column_bytes(reference / "labels" / "dav")
    assert verify_dataset(dataset, progress=False).ok


def test_redo_only_touches_the_named_shards(labelled, ckpt):
    settings, launch = RunSettings(batch_size=4), Launch(workers=0, progress=False)
    specs = [parse_teacher_spec(spec_str("dav", ckpt))]
    (report,) = labelgen.run.run(
        labelled, specs, settings, env={}, redo=["0,000002"], launch=launch
    )
    assert report.shards_done == ["000000", "000002"] and report.shards_skipped == 1


@pytest.mark.parametrize("bad", ["000003", "x", "2-1", "-1"])
def test_redo_of_an_unknown_shard_is_a_user_error(dataset, ckpt, bad):
    result = CliRunner().invoke(
        app, ["run", "--dataset", str(dataset), "--teacher", spec_str("dav", ckpt), "--redo", bad]
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --redo") and "Traceback" not in result.output


def test_zarr_shard_missing_a_chunk_is_relabelled(dataset, ckpt):
    one_shard = {"RANK": "1", "WORLD_SIZE": "3"}  # shard 000001 only: keeps the test short
    (first,) = label(dataset, [spec_str("dav", ckpt)], env=one_shard, format="zarr")
    assert first.shards_done == ["000001"]
    column = dataset / "labels" / "dav"
    want = column_bytes(column)
    chunk = max((p for p in (column / "000001.zarr").rglob("*") if p.is_file()), key=str)
    chunk.unlink()
    (again,) = label(dataset, [spec_str("dav", ckpt)], env=one_shard, format="zarr")
    assert again.shards_done == ["000001"]
    assert column_bytes(column) == want


def test_a_zarr_shard_missing_a_chunk_is_unusable_for_every_command(dataset, ckpt):
    """One rule (`LabelColumn.check_shard`, sizes summed over the Zarr tree): `labelgen run`
    relabels the shard, `student train` refuses the column, `pipeline verify` reports it."""
    from pipeline.labels.column import RESIZED, LabelColumn
    from student.data.columns import check_columns

    label(dataset, [spec_str("dav", ckpt)], format="zarr")
    column = dataset / "labels" / "dav"
    want = column_bytes(column)
    shard = column / "000001.zarr"
    max((p for p in shard.rglob("*") if p.is_file() and p.name != "zarr.json"), key=str).unlink()
    info = load_dataset(dataset)
    assert LabelColumn(info, "dav").check_shard(info.shards[1]).status == RESIZED
    (problem,) = verify_dataset(dataset, progress=False).problems
    assert problem.startswith(f"{shard} has ") and problem.endswith("--redo 000001")
    with pytest.raises(ValueError, match=r"'dav'.*shards 000001 differ in size.*--redo 000001"):
        check_columns(dataset, ["dav"])
    (again,) = label(dataset, [spec_str("dav", ckpt)], format="zarr")
    assert again.shards_done == ["000001"] and again.shards_skipped == 2
    assert column_bytes(column) == want
    assert verify_dataset(dataset, progress=False).ok
    assert list(check_columns(dataset, ["dav"])) == ["dav"]


def test_a_failed_redo_keeps_the_intact_done_labels(labelled, reference, ckpt, monkeypatch):
    fail_shards(monkeypatch, "disk full (simulated)")
    (report,) = labelgen.run.run(
        labelled,
        [parse_teacher_spec(spec_str("dav", ckpt))],
        RunSettings(batch_size=4),
        env={},
        redo=["000001"],
        launch=Launch(workers=0, progress=False),
    )
    assert report.shards_failed == ["000001: RuntimeError: disk full (simulated)"]
    manifest = load_dataset(labelled).layout.manifest("dav")
    assert '"failed"' not in manifest.read_text()  # the published shard is still the column's
    assert verify_dataset(labelled, progress=False).ok
    assert column_bytes(labelled / "labels" / "dav") == column_bytes(reference / "labels" / "dav")


def test_shards_labelled_from_other_images_are_found_and_relabelled(labelled, reference, ckpt):
    """Each done entry records the sha256 of the image shard it was labelled from; a shard
    whose images changed since (as dataset.json says now) fails verify and is relabelled."""
    import json

    from student.data.columns import check_columns

    path = load_dataset(labelled).layout.manifest("dav")
    manifest = json.loads(path.read_text())
    info = {s.name: s.image_sha256 for s in load_dataset(labelled).shards}
    assert all(e["image_sha256"] == info[n] for n, e in manifest["shards"].items())
    manifest["shards"]["000001"]["image_sha256"] = "0" * 64  # labelled from other images
    path.write_text(json.dumps(manifest))
    problems = verify_dataset(labelled, progress=False).problems
    assert len(problems) == 1 and "labelled from other images" in problems[0]
    assert "--redo 000001" in problems[0]
    with pytest.raises(ValueError, match="'dav'.*000001.*other images.*--redo 000001"):
        check_columns(labelled, ["dav"])
    (report,) = label(labelled, [spec_str("dav", ckpt)])
    assert report.shards_done == ["000001"]
    assert verify_dataset(labelled, progress=False).ok
    assert column_bytes(labelled / "labels" / "dav") == column_bytes(reference / "labels" / "dav")
