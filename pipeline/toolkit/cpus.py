"""How many CPUs a process may use: the one rule behind every `--workers` left unset and behind
the thread count a training run pins.

`usable_cpus()` counts the CPUs of this process's affinity mask (what a SLURM job, a container's
cpuset or `taskset` lets it run on), not the machine's. A `--workers` left unset (None) is
`min(WORKERS_CAP, usable CPUs)`: every process of the pool has a CPU to itself, and no pool
outgrows what the data loading can use (PyTorch warns when DataLoader workers outnumber CPUs).
No torch here: the settings modules import this before any command parses its flags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

WORKERS_CAP = 4
"""The most worker processes a `--workers` left unset starts."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS, Windows


def auto_workers(workers: int | None) -> int:
    """`workers` as given, or for None (unset) `min(WORKERS_CAP, usable CPUs)`."""
    return min(WORKERS_CAP, usable_cpus()) if workers is None else workers


def rank_threads(env: Mapping[str, str] | None = None) -> int:
    """Intra-op threads for one rank: `OMP_NUM_THREADS` when set (torchrun sets 1 for several
    processes per node), else the usable CPUs shared among this node's ranks
    (`LOCAL_WORLD_SIZE`), at least 1."""
    env = os.environ if env is None else env
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        if env.get(name) and not env[name].strip().isdigit():
            raise ValueError(f"environment variable {name}={env[name]!r} is not an integer")
    if env.get("OMP_NUM_THREADS"):
        return max(1, int(env["OMP_NUM_THREADS"]))
    return max(1, usable_cpus() // max(1, int(env.get("LOCAL_WORLD_SIZE") or 1)))
