"""`labelgen run` on the command line: summary lines, exit codes, one-line user errors."""

from __future__ import annotations

import pytest
from lgrun_helpers import column_bytes, copy_dataset, fail_shards, spec_str, tree_snapshot
from typer.testing import CliRunner

import labelgen.run
from labelgen.cli import app

FAST = ["--batch-size", "4", "--workers", "0", "--no-progress"]


def invoke(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def check_user_error(result, *fragments: str) -> None:
    """Exit code 2 and exactly one line `error: ...`, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_run_prints_a_summary_then_nothing_to_do(dataset, reference, ckpt, monkeypatch):
    result = invoke("--dataset", str(dataset), "--teacher", spec_str("dav", ckpt), *FAST)
    assert result.exit_code == 0, result.output
    # 3 images; views: 1+5, 1+2, 1+2 (full + planned)
    assert "dav: labelled 3 shards (3 images, 12 views, " in result.output
    assert "0 failed images; flagged maps: none" in result.output
    assert column_bytes(dataset / "labels" / "dav") == column_bytes(reference / "labels" / "dav")

    def refuse(*args, **kwargs):
        raise AssertionError("a finished teacher must not be loaded")

    monkeypatch.setattr(labelgen.run, "load_teacher", refuse)
    again = invoke("--dataset", str(dataset), "--teacher", spec_str("dav", ckpt), *FAST)
    assert again.exit_code == 0, again.output
    assert again.output.strip().endswith("dav: nothing to do (3 shards already done)")


def test_failed_shard_exits_1_and_is_redone_next_time(dataset, reference, ckpt, monkeypatch):
    real = fail_shards(monkeypatch, "disk on fire", "000001")
    result = invoke("--dataset", str(dataset), "--teacher", spec_str("dav", ckpt), *FAST)
    assert result.exit_code == 1, result.output
    assert "dav: labelled 2 shards" in result.output
    assert "FAILED shard 000001: RuntimeError: disk on fire" in result.output
    monkeypatch.setattr(labelgen.run, "label_shard", real)
    again = invoke("--dataset", str(dataset), "--teacher", spec_str("dav", ckpt), *FAST)
    assert again.exit_code == 0, again.output
    assert "dav: labelled 1 shards" in again.output
    assert column_bytes(dataset / "labels" / "dav") == column_bytes(reference / "labels" / "dav")


def test_a_shard_that_fails_midway_is_not_counted_as_labelled(dataset, ckpt, monkeypatch):
    real = labelgen.run.label_shard

    def fail_after_the_first_image(job, how, on_image):
        def count_then_fail(n_views: int) -> None:
            on_image(n_views)
            raise RuntimeError("disk on fire")

        hook = count_then_fail if job.out.name.startswith("000000") else on_image
        return real(job, how, hook)

    monkeypatch.setattr(labelgen.run, "label_shard", fail_after_the_first_image)
    result = invoke("--dataset", str(dataset), "--teacher", spec_str("dav", ckpt), *FAST)
    assert result.exit_code == 1, result.output
    # shards 000001 and 000002: 1 + 2 views each; 000000's image (1 + 5 views) is not counted
    assert "dav: labelled 2 shards (2 images, 6 views, " in result.output
    assert "FAILED shard 000000: RuntimeError: disk on fire" in result.output


def test_changed_weights_are_a_one_line_error(reference, tiny_ckpt, tmp_path):
    ds = copy_dataset(reference, tmp_path / "ds")
    before = tree_snapshot(ds / "labels")
    result = invoke("--dataset", str(ds), "--teacher", spec_str("dav", tiny_ckpt(1)), *FAST)
    check_user_error(result, "'dav'", "other weights", "--overwrite")
    assert tree_snapshot(ds / "labels") == before


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--teacher", "nonsense"], "expected NAME=ADAPTER:SOURCE"),
        (["--teacher", "Bad.Name=depth-anything-v2:{ckpt}"], "is invalid"),
        (["--teacher", "x=no-such-adapter:{ckpt}"], "no-such-adapter"),
        (["--teacher", "x=depth-anything-v2:{ckpt},colour=red"], "unknown option"),
        (["--teacher", "x=depth-anything-v2:{ckpt}", "--teacher", "x=dpt:{ckpt}"], "unique"),
        ([], "no teacher given"),
        (["--teacher", "x=depth-anything-v2:{ckpt}", "--precision", "fp8"], "--precision"),
        (["--teacher", "x=depth-anything-v2:{ckpt}", "--format", "parquet"], "parquet"),
        (["--teacher", "x=depth-anything-v2:{ckpt}", "--codec", "jpeg"], "jpeg"),
        (["--teacher", "x=depth-anything-v2:{ckpt}", "--batch-size", "0"], "--batch-size"),
        (["--teacher", "x=depth-anything-v2:{empty}"], "not a depth-anything-v2 checkpoint"),
    ],
)
def test_bad_teacher_or_flag_is_a_one_line_error(args, fragment, dataset, ckpt, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(ckpt=ckpt, empty=empty) for a in args]
    result = invoke("--dataset", str(dataset), *args, "--no-progress")
    check_user_error(result, fragment)
    assert not (dataset / "labels").exists() or not any((dataset / "labels").rglob("*.tar"))


def test_missing_dataset_is_a_one_line_error(tmp_path, ckpt):
    missing = tmp_path / "nowhere"
    result = invoke("--dataset", str(missing), "--teacher", spec_str("dav", ckpt), *FAST)
    check_user_error(result, "not a prepared dataset", "pipeline prepare")
    assert not missing.exists()


def test_directory_that_is_not_a_dataset_is_a_one_line_error(tmp_path, ckpt):
    result = invoke("--dataset", str(tmp_path), "--teacher", spec_str("dav", ckpt), *FAST)
    check_user_error(result, "not a prepared dataset")


def test_dataset_option_is_required(ckpt):
    result = invoke("--teacher", spec_str("dav", ckpt))
    assert result.exit_code == 2
    assert "--dataset" in result.output and "Traceback" not in result.output


def test_teachers_file_names_the_same_teacher(reference, ckpt, tmp_path, monkeypatch):
    ds = copy_dataset(reference, tmp_path / "ds")
    spec = tmp_path / "teachers.yaml"
    spec.write_text(
        f"- name: dav\n  adapter: depth-anything-v2\n  source: {ckpt}\n  options:\n"
        "    full_size: 140\n"
    )
    monkeypatch.setattr(labelgen.run, "load_teacher", None)  # must not be needed
    result = invoke("--dataset", str(ds), "--teachers-file", str(spec), *FAST)
    assert result.exit_code == 0, result.output
    assert "dav: nothing to do (3 shards already done)" in result.output
