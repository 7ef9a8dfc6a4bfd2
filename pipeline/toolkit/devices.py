"""Which torch device this process computes on: the one rule every command's `--device` follows.

`auto` is this rank's GPU (`LOCAL_RANK` / `SLURM_LOCALID`, see `distributed.local_rank`) when a GPU
is present, else the CPU; a bare `cuda` is this rank's GPU too (making it the current device needs
an index). Anything else (`cpu`, `cuda:1`, `mps`) is taken as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pipeline.toolkit.distributed import local_rank


def resolve_device(name: str = "auto", env: Mapping[str, str] | None = None) -> torch.device:
    """`--device` value -> torch device (see the module docstring)."""
    if name == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if name in ("auto", "cuda"):
        return torch.device("cuda", local_rank(env, devices=torch.cuda.device_count()))
    return torch.device(name)


def use_device(device: torch.device) -> None:
    """Make a CUDA device the current one, so that every kernel, context and default stream of
    this process is on it (not on cuda:0)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
