"""`pipeline.toolkit.atomic.publishing`: files and directories appear whole or not at all."""

from __future__ import annotations

import os

import pytest

from pipeline.toolkit.atomic import is_temporary, publishing


def test_a_directory_is_replaced_by_renames_and_restored_on_error(tmp_path, monkeypatch):
    target = tmp_path / "000001.zarr"
    with publishing(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("old")
    assert (target / "a").read_text() == "old"

    moves = []
    real_replace = os.replace

    def recording_replace(src, dst):
        moves.append((os.path.basename(src), os.path.basename(dst), os.path.exists(target)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    with publishing(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("new")
    # the old tree was moved aside (not deleted in place) before the new one was renamed in
    assert [m[1] for m in moves][-1] == "000001.zarr" and len(moves) == 2
    assert (target / "a").read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if is_temporary(p)]  # the old tree is gone

    failed = []

    def failing_replace(src, dst):  # the first rename onto the target fails
        if os.path.basename(dst) == "000001.zarr" and not failed:
            failed.append(src)
            raise OSError("disk gone (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"), publishing(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("newer")
    assert (target / "a").read_text() == "new"  # the previous tree is back
    assert not [p for p in tmp_path.iterdir() if is_temporary(p)]
