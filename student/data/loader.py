"""The DataLoader around a `DistillStream`.

`make_loader` builds a `DistillLoader`: a `torch.utils.data.DataLoader` with `batch_size=None`
(the stream yields whole batches), which tells the stream each batch it hands out so that
`stream.state_dict()` is the training loop's real position (workers prefetch ahead of it).

Worker processes. Every worker opens its own shard files lazily, inside its iterator, so no open
file, zarr array or event loop crosses a fork. zarr ≥ 3.1 also resets its event loop after a fork
and the zarr label reader reopens arrays in a new process, so the platform default (`fork` on
Linux; fast to start) is safe; pass `multiprocessing_context="forkserver"` (or "spawn") when the
main process holds state that must not be forked (e.g. zarr arrays opened by the caller in
threads). Persistent workers are off by default: they keep the epoch they started with, so
`stream.set_epoch` would not reach them. Workers exit when the training process dies
(`pipeline.toolkit.workers`), guarded from the thread that iterates the loader.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info

from pipeline.toolkit.workers import ExitWithParent, exit_with_parent
from student.data.stream import DistillStream

log = logging.getLogger(__name__)


class DistillLoader(DataLoader):
    """A DataLoader over a `DistillStream` that reports handed-out batches to the stream."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = self.dataset
        stream.begin_iteration()  # type: ignore[attr-defined]
        if isinstance(self.worker_init_fn, WorkerInit):  # workers start in this thread
            self.worker_init_fn = WorkerInit(exit_with_parent())
        for batch in super().__iter__():
            stream.note_batch(batch)  # type: ignore[attr-defined]
            yield batch


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn`: seed `random`, NumPy's global and torch's RNG of a worker from the
    stream's (seed, epoch, rank, worker). The stream itself only uses its own seeded generators;
    this covers any other code that draws from the global ones."""
    info = get_worker_info()
    stream = info.dataset if info is not None else None
    ids = [getattr(stream, "seed", 0), getattr(stream, "epoch", 0), getattr(stream, "rank", 0)]
    state = np.random.SeedSequence([*ids, worker_id]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[0]))
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass(frozen=True)
class WorkerInit:
    """`worker_init_fn` of the loader: exit with the training process, then `seed_worker`."""

    guard: ExitWithParent

    def __call__(self, worker_id: int) -> None:
        self.guard()
        seed_worker(worker_id)


def make_loader(
    stream: DistillStream,
    batch_size: int | None = None,
    workers: int = 2,
    *,
    pin_memory: bool | None = None,
    persistent_workers: bool = False,
    prefetch_factor: int | None = 2,
    multiprocessing_context: str | None = None,
    timeout: float = 0,
) -> DistillLoader:
    """A loader yielding the stream's batches in step order (see the module docstring).

    `batch_size`, when given, must equal `stream.batch_size` (the stream makes the batches).
    `pin_memory` defaults to whether CUDA is available.
    """
    if batch_size is not None and batch_size != stream.batch_size:
        raise ValueError(
            f"batch_size {batch_size} differs from the stream's {stream.batch_size}; the stream "
            "builds the batches: create it with DistillStream(..., batch_size=...)"
        )
    if workers < 0:
        raise ValueError(f"workers must be ≥ 0, got {workers}")
    stream.loader_workers = workers  # part of the stream's position (state_dict)
    if persistent_workers and workers > 0:
        log.warning(
            "persistent workers keep the epoch and resume position they started with: "
            "stream.set_epoch/load_state_dict will not reach them"
        )
    extra: dict[str, Any] = {}
    if workers > 0:
        extra.update(
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
            multiprocessing_context=multiprocessing_context,
            worker_init_fn=WorkerInit(exit_with_parent()),
        )
    return DistillLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        timeout=timeout,
        **extra,
    )
