"""Who am I among the workers of a job: rank and world size from torchrun or SLURM.

No coordinator process: every worker derives its share of the work from its environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerInfo:
    rank: int
    world_size: int
    source: str  # which environment variables decided: torchrun | slurm-array | slurm | single

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank}/{self.world_size} ({self.source})"


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from None


def worker_info(env: Mapping[str, str] | None = None) -> WorkerInfo:
    """torchrun (`RANK`/`WORLD_SIZE`), a SLURM array (`SLURM_ARRAY_TASK_ID`/`_COUNT`, offset by
    `SLURM_ARRAY_TASK_MIN`), SLURM tasks (`SLURM_PROCID`/`SLURM_NTASKS`), else a single worker."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        info = WorkerInfo(_int(env, "RANK"), _int(env, "WORLD_SIZE"), "torchrun")
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = _int(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        rank = _int(env, "SLURM_ARRAY_TASK_ID") - first
        info = WorkerInfo(rank, _int(env, "SLURM_ARRAY_TASK_COUNT"), "slurm-array")
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        info = WorkerInfo(_int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"), "slurm")
    else:
        info = WorkerInfo(0, 1, "single")
    if not 0 <= info.rank < info.world_size:
        raise ValueError(f"{info}: rank must be in [0, world size); check the launcher variables")
    return info


def rank_and_world(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """`(rank, world size)`: the ones given, else the launcher's (`worker_info`); checked."""
    env = worker_info()
    rank = env.rank if rank is None else int(rank)
    world = env.world_size if world is None else int(world)
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, world size {world})")
    return rank, world


def local_rank(env: Mapping[str, str] | None = None, devices: int | None = None) -> int:
    """This process's GPU index on its node: `LOCAL_RANK` (torchrun), else `SLURM_LOCALID`
    (`srun`), else 0; taken modulo `devices` (the visible GPUs) when given, so a task that SLURM
    restricted to one GPU uses that one."""
    env = os.environ if env is None else env
    index = 0
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if name in env:
            index = _int(env, name)
            break
    return index % devices if devices else index


def my_share(items: Sequence[T], info: WorkerInfo) -> list[T]:
    """Static round-robin split: item i belongs to rank i % world_size."""
    return [item for i, item in enumerate(items) if i % info.world_size == info.rank]
