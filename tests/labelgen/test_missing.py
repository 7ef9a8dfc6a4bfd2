"""`labelgen missing`: the shards of each teacher column left to label (missing, failed, damaged,
and with --verify corrupt), the `labelgen run --shards` command that labels exactly those, and its
exit status (0 complete, 3 shards left, 2 bad input)."""

from __future__ import annotations

import json
import shlex

import pytest
from lgrun_helpers import column_bytes, copy_dataset, label, make_dataset, spec_str
from test_lgrun_cli import check_user_error
from typer.testing import CliRunner

from labelgen.cli import app
from labelgen.run import run
from labelgen.settings import RunSettings
from labelgen.teachers import parse_teacher_spec
from pipeline.dataset import load_dataset
from pipeline.labels.column import LabelColumn
from pipeline.toolkit.launch import Launch

SHARDS = 5
EXTRA = ["--workers", "0", "--no-progress"]  # for the printed commands, in tests


@pytest.fixture(scope="session")
def five(tmp_path_factory):
    """Five small photos, one per shard (never written to: copy it)."""
    root = tmp_path_factory.mktemp("five")
    return make_dataset(root, {f"p{i}": (240 + 10 * i, 300) for i in range(SHARDS)}, shard_size=1)


@pytest.fixture(scope="session")
def five_labelled(five, ckpt, tmp_path_factory):
    """`five` labelled by teacher `dav` in one uninterrupted run (batch 4)."""
    ds = copy_dataset(five, tmp_path_factory.mktemp("five-labelled") / "ds")
    (report,) = label(ds, [spec_str("dav", ckpt)])
    assert len(report.shards_done) == SHARDS
    return ds


def damage(ds):
    """000000 intact; 000001 deleted; 000002 recorded as failed; 000003 truncated; 000004 one
    byte flipped (same size: only a checksum sees it)."""
    column = ds / "labels" / "dav"
    (column / "000001.tar").unlink()
    (column / "000002.tar").unlink()
    info = load_dataset(ds)
    assert LabelColumn(info, "dav").record_failed(info.shards[2], "RuntimeError: CUDA error")
    third = column / "000003.tar"
    third.write_bytes(third.read_bytes()[:1000])
    fourth = column / "000004.tar"
    data = bytearray(fourth.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fourth.write_bytes(bytes(data))


@pytest.fixture
def damaged(five_labelled, tmp_path):
    ds = copy_dataset(five_labelled, tmp_path / "ds")
    damage(ds)
    return ds


def missing(ds, *args):
    return CliRunner().invoke(app, ["missing", "--dataset", str(ds), *args])


def test_lists_exactly_the_failed_and_damaged_shards(damaged, ckpt):
    result = missing(damaged, "--teacher", spec_str("dav", ckpt), "--json")
    assert result.exit_code == 3, result.output
    out = json.loads(result.output)
    states = out["columns"]["dav"]
    assert states["failed"] == ["000002"]
    assert states["damaged"] == ["000001", "000003"]
    assert states["missing"] == states["foreign"] == states["corrupt"] == []
    assert states["todo"] == ["000001", "000002", "000003"] and states["notes"] == []
    (resubmit,) = out["resubmit"]
    command = shlex.split(resubmit["command"])
    assert command[command.index("--shards") + 1] == "000001-000003"
    assert command[command.index("--batch-size") + 1] == "4"  # as the column was labelled
    assert "--redo" not in command  # `labelgen run` relabels these by itself
    assert "--array=0-2" in resubmit["sbatch"] and "SHARDS=000001-000003" in resubmit["sbatch"]


def test_verify_finds_the_flipped_byte_and_redoes_it(damaged, ckpt):
    result = missing(damaged, "--teacher", spec_str("dav", ckpt), "--verify", "--json")
    assert result.exit_code == 3, result.output
    out = json.loads(result.output)
    assert out["columns"]["dav"]["corrupt"] == ["000004"]
    (resubmit,) = out["resubmit"]
    assert resubmit["shards"] == "000001-000004" and resubmit["redo"] == "000004"
    assert resubmit["command"].endswith("--shards 000001-000004 --redo 000004")


def test_printed_command_completes_the_column(damaged, five_labelled, ckpt):
    first = missing(damaged, "--teacher", spec_str("dav", ckpt), "--verify")
    assert first.exit_code == 3
    lines = first.output.splitlines()
    assert lines[0] == (
        "dav: 4 of 5 shards to label: failed 000002; damaged 000001,000003; corrupt 000004"
    )
    command = shlex.split(lines[lines.index("label them (dav):") + 1])
    assert command[:2] == ["labelgen", "run"]
    result = CliRunner().invoke(app, [*command[1:], *EXTRA])
    assert result.exit_code == 0, result.output
    assert "labelled 4 shards" in result.output
    again = missing(damaged, "--teacher", spec_str("dav", ckpt), "--verify")
    assert again.exit_code == 0, again.output
    assert again.output.strip() == "dav: complete (5 shards)"
    # The repaired column is byte for byte the uninterrupted one.
    column = column_bytes(damaged / "labels" / "dav")
    assert column == column_bytes(five_labelled / "labels" / "dav")


def test_run_shards_labels_only_those(five, ckpt, tmp_path):
    ds = copy_dataset(five, tmp_path / "ds")
    specs = [parse_teacher_spec(spec_str("dav", ckpt))]
    launch = Launch(workers=0, progress=False)
    (report,) = run(ds, specs, RunSettings(batch_size=4), {}, launch=launch, shards=["1", "3-4"])
    assert report.shards_done == ["000001", "000003", "000004"]
    result = missing(ds, "--teacher", spec_str("dav", ckpt))
    assert result.exit_code == 3
    assert result.output.splitlines()[0] == "dav: 2 of 5 shards to label: missing 000000,000002"


def test_a_new_teacher_gets_its_own_command(five_labelled, tiny_ckpt, ckpt, tmp_path):
    """A column not made yet is all missing; its flags differ from `dav`'s (batch size), so it
    gets its own command, with the teacher as given."""
    ds = copy_dataset(five_labelled, tmp_path / "ds")
    (ds / "labels" / "dav" / "000004.tar").unlink()
    new = spec_str("new", tiny_ckpt(1))
    result = missing(ds, "--teacher", spec_str("dav", ckpt), "--teacher", new, "--json")
    assert result.exit_code == 3
    out = json.loads(result.output)
    assert out["columns"]["new"]["missing"] == [f"{i:06d}" for i in range(SHARDS)]
    dav, fresh = out["resubmit"]
    assert dav["columns"] == ["dav"] and dav["shards"] == "000004"
    assert fresh["columns"] == ["new"] and fresh["shards"] == "000000-000004"
    assert f"--teacher {new}" in fresh["command"]
    assert "--batch-size" not in fresh["command"]


def test_teachers_file_is_passed_on(damaged, ckpt, tmp_path):
    teachers = tmp_path / "teachers.yaml"
    teachers.write_text(
        f"- name: dav\n  adapter: depth-anything-v2\n  source: {ckpt}\n"
        "  options: {full_size: 140}\n"
    )
    result = missing(damaged, "--teachers-file", str(teachers), "--json")
    assert result.exit_code == 3, result.output
    (resubmit,) = json.loads(result.output)["resubmit"]
    assert f"--teachers-file {teachers}" in resubmit["command"]
    assert f"TEACHERS={teachers}" in resubmit["sbatch"] and "--teacher" not in resubmit["sbatch"]


def test_bad_input_is_a_one_line_error(damaged, ckpt, tmp_path):
    spec = spec_str("dav", ckpt)
    check_user_error(missing(tmp_path / "nope", "--teacher", spec), "nope")
    check_user_error(missing(damaged, "--teacher", spec, "--max-array", "0"), "--max-array")
    check_user_error(missing(damaged), "no teacher given")
    result = CliRunner().invoke(
        app, ["run", "--dataset", str(damaged), "--teacher", spec, "--shards", "7", *EXTRA]
    )
    check_user_error(result, "--shards '7': no such shard")


def test_another_teacher_than_the_columns_is_noted(damaged, ckpt):
    """The printed command would be refused (`labelgen run` keeps a column's teacher): said."""
    result = missing(damaged, "--teacher", spec_str("dav", ckpt, full_size=None))
    assert result.exit_code == 3
    note = result.output.splitlines()[1]
    assert note.startswith(f"dav: note: the column was made by teacher {spec_str('dav', ckpt)}")


def test_a_column_for_another_crop_plan_is_relabelled_whole(five_labelled, ckpt, tmp_path):
    ds = copy_dataset(five_labelled, tmp_path / "ds")
    path = ds / "labels" / "dav" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["plan_sha256"] = "0" * 64  # as if copied from another preparation of the images
    path.write_text(json.dumps(manifest))
    result = missing(ds, "--teacher", spec_str("dav", ckpt), "--json")
    assert result.exit_code == 3, result.output
    out = json.loads(result.output)
    assert out["columns"]["dav"]["foreign"] == [f"{i:06d}" for i in range(SHARDS)]
    (resubmit,) = out["resubmit"]
    assert "--overwrite" in shlex.split(resubmit["command"])
