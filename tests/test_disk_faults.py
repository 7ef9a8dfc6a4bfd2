"""A full disk, a read-only file system or a refused permission is one line in every command:
`error: FILE: what happened; what to do`, exit 2, no traceback, and no temporary left behind.

The commands write to real mounts (a small tmpfs that fills up, a read-only tmpfs or bind mount):
these tests are skipped where mounting is not allowed (not root, or a container without
CAP_SYS_ADMIN). The tests at the top simulate the faults and run everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dataset_helpers import prepare_small, write_fake_column, write_photos
from typer.testing import CliRunner

from evaluation.cli import app as evaluation_app
from labelgen.cli import app as labelgen_app
from labelgen.teachers import write_tiny_checkpoint
from pipeline.cli import app as pipeline_app
from pipeline.toolkit import tario
from pipeline.toolkit.atomic import is_temporary, publishing, write_bytes
from pipeline.toolkit.cliutil import user_message
from pipeline.toolkit.faults import published_name
from student.cli import app as student_app

runner = CliRunner()
STUDENT_FAST = ["--set", "data.size=112", "--set", "data.workers=0", "--no-progress"]


def check_fault(result, path: Path, what: str) -> None:
    """Exit 2, one `error:` line naming `path` and what happened, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith(f"error: {path}: {what}; "), errors[0]
    assert "choose another location" in errors[0]
    assert "Traceback" not in result.output


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temporary(p)]


def test_fault_under_another_error_is_reported_and_a_user_message_wins():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/ds/x.tar")
    try:
        try:
            raise full
        except OSError as e:
            raise RuntimeError("writer thread died") from e
    except RuntimeError as wrapped:
        message = user_message(wrapped)
    assert message.startswith("/data/ds/x.tar: no space left on device; free space")
    explained = ValueError("/data/config.yaml: cannot read it; fix its permissions")
    explained.__context__ = PermissionError(errno.EACCES, "Permission denied", "/data")
    assert user_message(explained) == str(explained)
    assert user_message(RuntimeError("a bug")) is None
    assert user_message(OSError(errno.EIO, "I/O error", "/x")) is None  # not the user's to fix


def test_a_rust_io_error_on_a_full_disk_names_the_file_being_published(tmp_path):
    """safetensors reports a full disk as `SafetensorError: ... (os error 28)`, no OSError."""

    class SafetensorError(Exception):
        pass

    target = tmp_path / "model.safetensors"
    with pytest.raises(SafetensorError) as info, publishing(target):
        raise SafetensorError("Error while serializing: I/O error: No space left (os error 28)")
    assert user_message(info.value) == (
        f"{target}: no space left on device; free space on its file system or choose another "
        "location"
    )
    assert list(tmp_path.iterdir()) == []
    assert user_message(SafetensorError("header too large")) is None


def reraised_by_a_dataloader(error: Exception) -> Exception:
    """`error` as torch's DataLoader re-raises a worker's error in the main process."""
    from torch._utils import ExceptionWrapper

    try:
        raise error
    except Exception:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    try:
        wrapper.reraise()
    except Exception as reraised:
        return reraised


def test_errors_of_dataloader_workers_are_one_line():
    """torch re-raises a worker's OSError without errno and file, its traceback as message."""
    shard = "/data/ds/labels/a/000001.tar"
    denied = reraised_by_a_dataloader(PermissionError(errno.EACCES, "Permission denied", shard))
    assert user_message(denied) == (
        f"{shard}: permission denied; give this user access to it (chmod, chown) or choose "
        "another location"
    )
    full = reraised_by_a_dataloader(OSError(errno.ENOSPC, "No space left on device"))
    assert user_message(full).startswith("a file (PIPELINE_DEBUG=1 shows which): no space left")
    damaged = reraised_by_a_dataloader(ValueError(f"{shard}: damaged; relabel it\nsecond"))
    assert user_message(damaged) == f"{shard}: damaged; relabel it"
    assert user_message(reraised_by_a_dataloader(RuntimeError("a bug"))) is None


def test_a_temporary_name_is_reported_as_the_file_it_was_to_become():
    assert published_name("out/.exp.p123-host-k2j3.tmp/model.safetensors") == (
        "out/exp/model.safetensors"
    )
    assert published_name("ds/labels/dav/.000000.tar.ab12cd.tmp") == "ds/labels/dav/000000.tar"
    assert published_name("runs/notes.tmp") == "runs/notes.tmp"


def test_a_write_that_fails_without_a_file_name_names_its_file_and_leaves_nothing(
    tmp_path, monkeypatch
):
    def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a failed write(2) reports it

    target = tmp_path / "shard.json"
    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError) as info:
        write_bytes(target, b"{}")
    assert info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_prepare_on_a_disk_that_fills_up_is_one_line(photo_folder, tmp_path, monkeypatch):
    def full_disk(self, name, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tario.TarWriter, "add", full_disk)
    out = tmp_path / "ds"
    result = runner.invoke(
        pipeline_app, ["prepare", "--images", str(photo_folder), "--out", str(out), "--no-progress"]
    )
    check_fault(result, out / "images" / "000000.tar", "no space left on device")
    assert not temporaries(tmp_path) and not list((out / "images").glob("*.tar"))
    monkeypatch.setenv("PIPELINE_DEBUG", "1")
    result = runner.invoke(
        pipeline_app, ["prepare", "--images", str(photo_folder), "--out", str(out), "--no-progress"]
    )
    assert isinstance(result.exception, OSError) and result.exception.errno == errno.ENOSPC


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 directory anyway")
def test_a_directory_without_write_permission_is_one_line(photo_folder, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = runner.invoke(
        pipeline_app,
        ["prepare", "--images", str(photo_folder), "--out", str(locked / "ds"), "--no-progress"],
    )
    check_fault(result, locked / "ds", "permission denied")


class Mounts:
    """Mount points made for one test, unmounted after it; a mount that fails skips the test."""

    def __init__(self, root: Path) -> None:
        self.root, self.points = root, []

    def _mount(self, *args: str) -> None:
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount here (needs root and CAP_SYS_ADMIN): {done.stderr.strip()}")

    def tmpfs(self, name: str, size: str, read_only: bool = False) -> Path:
        """A new tmpfs of `size` bytes (e.g. "100k") at ROOT/name, read-only if asked."""
        point = self.root / name
        point.mkdir()
        self._mount(
            "-t", "tmpfs", "-o", f"{'ro,' if read_only else ''}size={size}", "tmpfs", str(point)
        )
        self.points.append(point)
        return point

    def full_copy(self, source: Path, name: str, free: int) -> Path:
        """A copy of `source` on a tmpfs that has `free` bytes left after it."""
        point = self.tmpfs(name, "64m")
        shutil.copytree(source, point / source.name)
        used = (lambda st: (st.f_blocks - st.f_bfree) * st.f_frsize)(os.statvfs(point))
        self._mount("-o", f"remount,size={used + free}", str(point))
        return point / source.name

    def read_only(self, source: Path, name: str) -> Path:
        """`source` seen read-only at ROOT/name (a bind mount)."""
        point = self.root / name
        point.mkdir()
        self._mount("--bind", str(source), str(point))
        self.points.append(point)
        self._mount("-o", "remount,bind,ro", str(point))
        return point

    def unmount(self) -> None:
        for point in reversed(self.points):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def mounts(tmp_path):
    made = Mounts(tmp_path)
    yield made
    made.unmount()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Photos, a prepared dataset with a fake teacher column `alpha`, a tiny teacher."""
    root = tmp_path_factory.mktemp("inputs")
    photos = write_photos(root / "photos")
    dataset = prepare_small(photos, root / "ds", shard_size=2)
    write_fake_column(dataset, "alpha")
    return photos, dataset, write_tiny_checkpoint("depth-anything-v2", root / "tiny")


def test_prepare_into_a_full_or_read_only_disk(inputs, mounts):
    photos = inputs[0]
    full, ro = mounts.tmpfs("full", "100k"), mounts.tmpfs("ro", "1m", read_only=True)
    result = runner.invoke(
        pipeline_app,
        ["prepare", "--images", str(photos), "--out", str(full / "ds"), "--no-progress"],
    )
    check_fault(result, full / "ds" / "images" / "000000.tar", "no space left on device")
    assert not temporaries(full) and not list((full / "ds" / "images").glob("*.tar"))
    result = runner.invoke(
        pipeline_app, ["prepare", "--images", str(photos), "--out", str(ro / "ds"), "--no-progress"]
    )
    check_fault(result, ro / "ds", "read-only file system")
    # the installed command, as a user's shell runs it: stderr is that one line
    args = ["--images", str(photos), "--out", str(ro / "ds"), "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "prepare", *args], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"error: {ro / 'ds'}: read-only file system; make it writable (remount it read-write) "
        "or choose another location"
    ], done.stderr


def labelgen_run(dataset: Path, tiny: Path):
    teacher = f"dav=depth-anything-v2:{tiny},full_size=140"
    args = ["run", "--dataset", str(dataset), "--teacher", teacher, "--workers", "0"]
    return runner.invoke(labelgen_app, [*args, "--batch-size", "4", "--no-progress"])


def test_labelgen_run_on_a_read_only_dataset(inputs, mounts):
    dataset = mounts.read_only(inputs[1], "ro")
    check_fault(
        labelgen_run(dataset, inputs[2]), dataset / "labels" / "dav", "read-only file system"
    )


def test_labelgen_run_stops_at_the_first_shard_a_full_disk_fails(inputs, mounts):
    """The writer thread's error reaches the command: one line, not one failure per shard."""
    dataset = mounts.full_copy(inputs[1], "full", free=64 * 1024)
    result = labelgen_run(dataset, inputs[2])
    check_fault(result, dataset / "labels" / "dav" / "000000.tar", "no space left on device")
    assert "FAILED" not in result.output and not temporaries(dataset)
    assert not list((dataset / "labels" / "dav").glob("0*"))


def test_world_labels_on_a_read_only_dataset(tmp_path, mounts):
    world, dataset = tmp_path / "world", tmp_path / "wds"
    render = ["world", "render", "--out", str(world), "--images", "2", "--height", "96"]
    assert (
        runner.invoke(
            pipeline_app, [*render, "--width", "128", "--workers", "0", "--no-progress"]
        ).exit_code
        == 0
    )
    plan = ["--tile", "56", "--min-region", "64", "--regions", "1", "--no-progress"]
    assert (
        runner.invoke(
            pipeline_app, ["prepare", "--images", str(world), "--out", str(dataset), *plan]
        ).exit_code
        == 0
    )
    ro = mounts.read_only(dataset, "ro")
    args = ["world", "labels", "--dataset", str(ro), "--world", str(world), "--column", "exact"]
    result = runner.invoke(pipeline_app, [*args, "--no-progress"])
    check_fault(result, ro / "labels", "read-only file system")


def test_world_render_workers_on_a_full_disk(tmp_path, mounts):
    """A worker process's error reaches the command as one line."""
    full = mounts.tmpfs("full", "100k")
    render = ["world", "render", "--out", str(full / "w"), "--images", "4", "--height", "96"]
    result = runner.invoke(
        pipeline_app, [*render, "--width", "128", "--workers", "2", "--no-progress"]
    )
    assert result.exit_code == 2 and f"error: {full / 'w'}/" in result.output, result.output
    assert "no space left on device" in result.output and not temporaries(full)


def test_evaluation_run_into_a_read_only_or_full_out(inputs, mounts):
    """A full disk under numpy's `tofile` (a short write, no errno) is a full disk too."""
    ro, full = mounts.tmpfs("ro", "1m", read_only=True), mounts.tmpfs("full", "200k")
    args = ["run", "--model", f"depth-anything-v2:{inputs[2]}", "--dataset", "middlebury"]
    result = runner.invoke(evaluation_app, [*args, "--out", str(ro / "eval"), "--no-progress"])
    check_fault(result, ro / "eval", "read-only file system")
    result = runner.invoke(evaluation_app, [*args, "--out", str(full / "eval"), "--no-progress"])
    npy = full / "eval" / "predictions" / "middlebury" / "motorcycle.npy"
    check_fault(result, npy, "no space left on device")
    assert not temporaries(full) and not npy.exists()


def student_train(out: Path, inputs, *extra: str):
    args = ["train", "--out", str(out), "--dataset", str(inputs[1]), "--teacher", "alpha"]
    args += ["--init", str(inputs[2]), "--steps", "1", "--batch-size", "2", *STUDENT_FAST]
    return runner.invoke(student_app, [*args, *extra])


def test_student_train_and_export_into_a_full_or_read_only_out(inputs, mounts, tmp_path):
    ro, full = mounts.tmpfs("ro", "1m", read_only=True), mounts.tmpfs("full", "1m")
    check_fault(student_train(ro / "run", inputs), ro / "run", "read-only file system")
    result = student_train(full / "run", inputs)
    check_fault(result, full / "run" / "checkpoints" / "step_0000001.pt", "no space left on device")
    assert not temporaries(full) and not list((full / "run" / "checkpoints").glob("step_*"))
    run = tmp_path / "run"
    assert student_train(run, inputs).exit_code == 0
    result = runner.invoke(student_app, ["export", str(run), "--out", str(ro / "hf")])
    check_fault(result, ro / "hf", "read-only file system")


def test_a_metrics_line_is_written_whole_or_not_at_all(mounts):
    from student.metrics import MetricsLog
    from student.rundir import RunDir

    full = mounts.tmpfs("full", "8k")
    log = MetricsLog(RunDir(full / "run"), 0)
    log.path.parent.mkdir(parents=True, exist_ok=True)
    log.append({"step": 1})
    with pytest.raises(OSError) as info:
        for step in range(2, 10_000):
            log.append({"step": step, "note": "x" * 100})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(log.path)
    lines = log.path.read_text().splitlines(keepends=True)
    assert all(line.endswith("}\n") for line in lines) and len(lines) > 10


def test_every_command_reports_errors_in_one_line():
    """Each command's callback is wrapped by `user_errors` (the benchmarks run as processes of
    their own)."""
    from typer.main import get_command

    unwrapped, seen = [], []

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])
        wrapped = getattr(getattr(command, "callback", None), "reports_user_errors", False)
        if not hasattr(command, "commands") and path[1:2] != ["bench"]:
            seen.append(" ".join(path))
            if not wrapped:
                unwrapped.append(seen[-1])

    for name, app in [
        ("pipeline", pipeline_app),
        ("labelgen", labelgen_app),
        ("student", student_app),
        ("evaluation", evaluation_app),
    ]:
        walk(get_command(app), [name])
    assert {"pipeline prepare", "pipeline world labels", "labelgen run", "student train"} <= set(
        seen
    ) and {"evaluation run", "student export"} <= set(seen), seen
    assert not unwrapped
