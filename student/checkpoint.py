"""Checkpoints of a training run: model, optimizer, scheduler, RNG states, step and data position.

Written atomically (temporary name, fsync, rename) as `RUN/checkpoints/step_NNNNNNN.pt`; the newest
complete one is what `--resume` loads. Its sha256 is published beside it, before it, as
`step_NNNNNNN.pt.sha256` (`sha256sum -c` reads it), and `load_checkpoint` (resume, export, the
evaluation of a run) verifies it: a damaged file is refused, naming it. A checkpoint without a
checksum (written before they were recorded) is read unverified.

A disk that fills up while a checkpoint is written leaves no temporary file and raises
`OSError(ENOSPC)` naming the checkpoint (torch says `unexpected pos` instead). `prune_checkpoints`
keeps what `checkpoint.keep_last` / `keep_every` say.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.toolkit import faults
from pipeline.toolkit.atomic import publishing, write_bytes
from pipeline.toolkit.hashing import sha256_file
from student.config import CheckpointSettings
from student.rundir import CHECKPOINT_NAME, RunDir

log = logging.getLogger("student")

DISK_FULL_FREE = 64 << 20
"""A failed write with less free space than this (bytes) left on its file system was a full disk."""
WRITE_FAILED = ("unexpected pos", "file write failed")
"""What torch's checkpoint writer says when a write fails."""


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()  # this rank's device only
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        # Into this rank's current device, whatever the number of GPUs of the saving node.
        cuda = states["cuda"]
        torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, list | tuple) else cuda)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write `state` (+ RNG states) for `step`, its checksum first; returns the path."""
    run = RunDir(Path(run_dir))
    path = run.checkpoint(step)
    with disk_full_names(path), publishing(path) as tmp:
        try:
            with open(tmp, "wb") as f:  # closed on error: no open handle keeps the space
                torch.save({**state, "step": step, "rng": rng_states()}, f)
        except RuntimeError as e:  # while the partial file still fills the disk
            if is_disk_full(e, tmp.parent):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
            raise
        write_bytes(run.checksum(path), f"{sha256_file(tmp)}  {path.name}\n".encode())
    return path


def is_disk_full(error: BaseException, directory: Path) -> bool:
    """Whether a failed write into `directory` failed for want of space."""
    if faults.is_disk_full(error):
        return True
    said = str(error)
    return (
        any(s in said for s in WRITE_FAILED) and shutil.disk_usage(directory).free < DISK_FULL_FREE
    )


@contextlib.contextmanager
def disk_full_names(path: Path) -> Iterator[None]:
    """An ENOSPC raised while `path` is written (an fsync, the checksum) names `path`."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC or e.filename == str(path):
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e


def prune_checkpoints(run_dir: Path, keep: CheckpointSettings) -> list[Path]:
    """Delete the published checkpoints (and their checksums) `keep` does not keep; returns
    them."""
    run = RunDir(Path(run_dir))
    found = run.checkpoint_files()
    if keep.keep_last is None:
        return []
    newest = [step_of(p) for p in found[-keep.keep_last :]]
    deleted = [p for p in found if not keep.keeps(step_of(p), newest)]
    for path in deleted:
        path.unlink(missing_ok=True)
        run.checksum(path).unlink(missing_ok=True)
    return deleted


def clear_leftovers(run_dir: Path) -> None:
    """Remove what killed writes left in `checkpoints/` (`RunDir.leftovers`); only the run's
    lock holder may."""
    for path in RunDir(Path(run_dir)).leftovers():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted checkpoint write", path)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = RunDir(Path(run_dir)).checkpoint_files()
    return found[-1] if found else None


def step_of(path: Path) -> int:
    """The step a checkpoint file is named after (`step_NNNNNNN.pt`)."""
    found = CHECKPOINT_NAME.match(Path(path).name)
    if found is None:
        raise ValueError(f"{path}: not a checkpoint name (step_NNNNNNN.pt)")
    return int(found.group(1))


def checkpoint_step(run_dir: Path) -> int:
    """The step of the run's newest checkpoint (0 when it has none)."""
    latest = latest_checkpoint(Path(run_dir))
    return step_of(latest) if latest is not None else 0


def verify_checkpoint(path: Path) -> None:
    """Refuse a checkpoint whose bytes are not the ones its checksum recorded when it was
    published (none recorded: nothing to verify)."""
    path = Path(path)
    sidecar = RunDir(path.parent.parent).checksum(path)
    try:
        recorded = sidecar.read_text().split()[0]
    except (FileNotFoundError, IndexError):
        return
    actual = sha256_file(path)
    if actual != recorded:
        raise ValueError(
            f"{path}: damaged checkpoint (its sha256 {actual[:12]} is not the {recorded[:12]} "
            f"recorded in {sidecar.name} when it was written); delete it to resume from the "
            "previous one"
        )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, once its checksum is verified (`verify_checkpoint`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a broken file gets a message naming it
        raise ValueError(
            f"{path}: unreadable checkpoint ({e}); delete it to resume from the previous one"
        ) from e
