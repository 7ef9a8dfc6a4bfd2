"""`student export --out DIR` is atomic and never clobbers: the export is published whole or not
at all, a user's own directory (or a file) is refused in one line unless --overwrite, the same
run's export is replaced, a killed export's leftovers are removed by the next one, and a full
disk is one line naming the directory with nothing partial left."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from train_helpers import checkpoint_run, runner

from pipeline.toolkit.atomic import is_temporary, owned_temporary, remove_stale_temporaries
from student.cli import app
from student.export import export_run


@pytest.fixture(scope="module")
def init(tmp_path_factory) -> Path:
    from labelgen.teachers import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("publish")
    return write_tiny_checkpoint("depth-anything-v2", root / "init", seed=3)


@pytest.fixture
def run(init, tmp_path) -> Path:
    """A run directory with one checkpoint (step 1) of the tiny student."""
    return checkpoint_run(tmp_path / "runs", init)


def export(run_dir: Path, out: Path, *extra: str):
    return runner.invoke(app, ["export", str(run_dir), "--out", str(out), *extra])


def one_line_error(result) -> str:
    """The error line of a command that must have failed with exit status 2."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if is_temporary(p))


def test_a_users_directory_is_refused_unless_overwrite(run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    (mine / "config.json").write_text('{"mine": true}\n')
    line = one_line_error(export(run, mine))
    assert f"--out {mine} is not empty" in line and "README.md, config.json" in line
    assert "--overwrite" in line
    assert (mine / "README.md").read_text() == "my notes\n"
    assert json.loads((mine / "config.json").read_text()) == {"mine": True}
    assert sorted(p.name for p in mine.iterdir()) == ["README.md", "config.json"]
    assert export(run, mine, "--overwrite").exit_code == 0
    assert "my notes" not in (mine / "README.md").read_text()
    assert json.loads((mine / "export.json").read_text())["step"] == 1
    assert temporaries(tmp_path) == []


def test_the_same_run_is_re_exported_into_its_own_directory(run, init, tmp_path):
    out = tmp_path / "hf"
    assert export(run, out).exit_code == 0, "first export"
    record = json.loads((out / "export.json").read_text())
    assert record["run"] == "run" and record["checkpoint"] == "checkpoints/step_0000001.pt"
    assert str(tmp_path) not in (out / "export.json").read_text()  # no local path
    (out / "stale.txt").write_text("from before")
    assert export(run, out).exit_code == 0, "re-export of the same run"
    assert not (out / "stale.txt").exists()  # replaced whole
    other = checkpoint_run(tmp_path / "other", init)
    line = one_line_error(export(other, out))
    assert "is an export of run run at step 1, not of run" in line
    assert temporaries(tmp_path) == []


def test_out_naming_a_file_is_one_line(run, tmp_path):
    file = tmp_path / "model.bin"
    file.write_bytes(b"x")
    line = one_line_error(export(run, file))
    assert f"--out {file} is an existing file" in line
    assert file.read_bytes() == b"x"


def test_a_failed_export_leaves_nothing_partial(run, tmp_path, monkeypatch):
    """A crash mid-export (after a 0-byte config.json) leaves no --out and no temporary; an
    earlier export in --out stays as it was."""
    import student.export as export_module

    def crash(student, out, processor_source=None):
        (Path(out) / "config.json").write_bytes(b"")
        raise RuntimeError("killed")

    monkeypatch.setattr(export_module, "save_hf", crash)
    with pytest.raises(RuntimeError, match="killed"):
        export_run(run, tmp_path / "hf")
    assert not (tmp_path / "hf").exists() and temporaries(tmp_path) == []
    monkeypatch.undo()
    export_run(run, tmp_path / "hf")
    before = (tmp_path / "hf" / "config.json").read_bytes()
    monkeypatch.setattr(export_module, "save_hf", crash)
    with pytest.raises(RuntimeError, match="killed"):
        export_run(run, tmp_path / "hf")
    assert (tmp_path / "hf" / "config.json").read_bytes() == before
    assert temporaries(tmp_path) == []


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                           capture_output=True, text=True)  # fmt: skip
    return int(child.stdout)


def test_a_killed_exports_leftovers_are_removed_by_the_next(run, tmp_path):
    out = tmp_path / "hf"
    live = owned_temporary(out)  # this process: still exporting
    killed = Path(str(live).replace(f".p{os.getpid()}-", f".p{dead_pid()}-"))
    killed.mkdir()
    (killed / "config.json").write_bytes(b"")
    aside = tmp_path / ".hf.k3j2h1.tmp"  # an old export renamed aside, never deleted
    aside.mkdir()
    neighbour = tmp_path / ".hf.v2.k3j2h1.tmp"  # another directory's (hf.v2)
    neighbour.write_bytes(b"")
    assert sorted(remove_stale_temporaries(out)) == sorted([killed, aside])
    assert live.is_dir() and neighbour.exists()
    shutil.rmtree(live)
    killed.mkdir()
    assert export(run, out).exit_code == 0
    assert temporaries(tmp_path) == [neighbour.name]
    assert (out / "config.json").stat().st_size > 0


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (skips the test where mounting is not allowed)."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("filling a disk needs a small tmpfs, and mounting one needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def check_disk_full(run: Path, disk: Path, *extra: str) -> None:
    out = disk / "export"
    line = one_line_error(export(run, out, *extra))
    assert f"error: {out}: no space left on device; free space" in line
    assert list(disk.iterdir()) == []  # neither --out nor a temporary


def test_a_full_disk_during_the_hf_export_is_one_line(run, tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        check_disk_full(run, disk)


@pytest.mark.slow  # an ONNX export (about 30 s)
def test_a_full_disk_during_the_onnx_export_is_one_line(run, tmp_path):
    pytest.importorskip("onnxscript")
    with small_disk(tmp_path / "disk", "64k") as disk:
        check_disk_full(run, disk, "--format", "onnx")
