"""What the project publishes follows the umask (others on a shared cluster can read it), not the
0600 of `tempfile` or safetensors: atomic files and trees, checkpoints, exported weights, tiny
teacher checkpoints, dataset files, label shards and manifests, reports and figures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pipeline.toolkit.atomic import current_umask, publishing, write_bytes, write_json


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _modes(root: Path, umask: int) -> dict[str, list[str]]:
    """Paths under `root` whose mode is not what the umask gives (files 0666, dirs 0777)."""
    wrong: dict[str, list[str]] = {"files": [], "dirs": []}
    for top, dirs, files in os.walk(root):
        for name in files:
            path = Path(top) / name
            if _mode(path) != 0o666 & ~umask:
                wrong["files"].append(f"{path.relative_to(root)} {oct(_mode(path))}")
        for name in dirs:
            path = Path(top) / name
            if _mode(path) != 0o777 & ~umask:
                wrong["dirs"].append(f"{path.relative_to(root)} {oct(_mode(path))}")
    return wrong


def test_the_umask_is_read_without_changing_it(umask):
    assert current_umask() == umask
    assert os.umask(umask) == umask


def test_published_files_and_trees_follow_the_umask_or_the_mode_asked(tmp_path, umask):
    with publishing(tmp_path / "private-writer.bin") as tmp:  # a library that writes 0600
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    write_json(tmp_path / "a.json", {"a": 1})
    with publishing(tmp_path / "tree.zarr") as tmp:
        (tmp / "sub").mkdir(parents=True, mode=0o700)
        os.close(os.open(tmp / "sub" / "chunk", os.O_CREAT | os.O_WRONLY, 0o600))
    assert _modes(tmp_path, umask) == {"files": [], "dirs": []}
    write_bytes(tmp_path / "secret", b"x", mode=0o600)
    assert _mode(tmp_path / "secret") == 0o600


def test_checkpoints_exports_and_tiny_checkpoints_follow_the_umask(tmp_path, umask):
    from labelgen.teachers import write_tiny_checkpoint
    from student.checkpoint import save_checkpoint
    from student.export import export_run
    from student.model import load_student
    from student.rundir import RunDir

    init = write_tiny_checkpoint("depth-anything-v2", tmp_path / "init")
    genpercept = write_tiny_checkpoint("genpercept", tmp_path / "genpercept")
    run = tmp_path / "run"
    RunDir(run).write_config({"init": str(init)})
    student = load_student(init, frozen_encoder=False)
    save_checkpoint(run, 1, {"model": student.model.state_dict()})
    export_run(run, tmp_path / "hf")
    assert list((tmp_path / "hf").glob("*.safetensors"))
    for root in (init, genpercept, run, tmp_path / "hf"):
        assert _modes(root, umask) == {"files": [], "dirs": []}, root


@pytest.mark.parametrize("backend", ["wds", "zarr"])
def test_dataset_labels_reports_and_figures_follow_the_umask(tmp_path, umask, backend):
    from dataset_helpers import prepare_small, write_fake_column, write_photos

    from evaluation.figures import save_png
    from evaluation.report import build_table
    from evaluation.report_files import write_report

    dataset = prepare_small(write_photos(tmp_path / "photos"), tmp_path / "ds")
    write_fake_column(dataset, "t", backend=backend)
    summary = {"model": {"name": "m"}, "datasets": {"nyu": {"abs_rel": 0.1, "delta1": 0.9}}}
    write_report(build_table([summary]), tmp_path / "report" / "r.md")
    save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "fig" / "a.png")
    for root in ("ds", "report", "fig"):
        assert _modes(tmp_path / root, umask) == {"files": [], "dirs": []}, root
