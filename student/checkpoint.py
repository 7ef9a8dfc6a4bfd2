"""Checkpoints of a training run: model, optimizer, scheduler, RNG states, step and data position.

Written atomically (temporary name, fsync, rename) as `RUN/checkpoints/step_NNNNNNN.pt`; the newest
complete one is what `--resume` loads.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.toolkit.atomic import publishing
from student.rundir import CHECKPOINT_NAME, RunDir


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
    """Write `state` (+ RNG states) for `step`; returns the path."""
    path = RunDir(Path(run_dir)).checkpoint(step)
    with publishing(path) as tmp:
        torch.save({**state, "step": step, "rng": rng_states()}, tmp)
    return path


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


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a broken file gets a message naming it
        raise ValueError(
            f"{path}: unreadable checkpoint ({e}); delete it to resume from the previous one"
        ) from e
