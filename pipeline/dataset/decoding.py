"""Decoding `pipeline prepare`'s input images in worker processes, in item order.

A decoding process that dies (killed for memory, a crash inside an image decoder) stops the run
with a message naming the images it held, instead of waiting forever for its results.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import partial

from pipeline.images.decode import Accepted, DecodeParams, Rejected, prepare_image
from pipeline.images.sources import Item
from pipeline.toolkit import tario
from pipeline.toolkit.workers import exit_with_parent


def process_item(item: Item, params: DecodeParams) -> Accepted | Rejected:
    """Load and decode one item (runs in a worker process); never raises for bad input."""
    try:
        data = item.load()
    except (OSError, tario.ShardError) as e:
        return Rejected(item.origin, f"cannot read the file ({e})")
    return prepare_image(data, item.origin, params)


CHUNK = 4  # items per task sent to a decoding process
AHEAD = 16  # tasks in flight per process (bounds memory for millions of items)


def process_chunk(items: list[Item], params: DecodeParams) -> list[Accepted | Rejected]:
    return [process_item(item, params) for item in items]


@contextmanager
def decoding(
    items: list[Item], params: DecodeParams, workers: int
) -> Iterator[Iterator[Accepted | Rejected]]:
    """Results of `process_item` in item order, from `workers` processes (1: in this process).

    A process that dies (killed for memory, or a crash inside an image decoder) stops the run
    with a message saying so, instead of waiting forever for its results.
    """
    work: Callable[[Item], Accepted | Rejected] = partial(process_item, params=params)
    if workers <= 1 or len(items) <= 1:
        yield map(work, items)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent (tqdm, user code)
    n = min(workers, len(items))
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=exit_with_parent()) as pool:
        yield _in_order(pool, items, params, n * AHEAD)


def _in_order(
    pool: ProcessPoolExecutor, items: list[Item], params: DecodeParams, ahead: int
) -> Iterator[Accepted | Rejected]:
    pending: deque[tuple[list[Item], Future]] = deque()
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        pending.append((chunk, pool.submit(process_chunk, chunk, params)))
        if len(pending) >= ahead:
            yield from _results(*pending.popleft())
    while pending:
        yield from _results(*pending.popleft())


def _results(chunk: list[Item], future: Future) -> list[Accepted | Rejected]:
    try:
        return future.result()
    except BrokenProcessPool as e:
        raise RuntimeError(
            "a decoding worker process died (killed for lack of memory, or a crash in an image "
            f"decoder) while decoding one of {', '.join(item.origin for item in chunk)}; re-run "
            "with fewer --workers, or move the file that causes it aside"
        ) from e


def accepted_only(
    items: Iterable[Item], results: Iterable[Accepted | Rejected], rejected: list[Rejected]
) -> Iterator[tuple[Item, Accepted]]:
    """Pair items with their results, diverting rejections into `rejected`."""
    for item, result in zip(items, results, strict=True):
        if isinstance(result, Rejected):
            rejected.append(result)
        else:
            yield item, result
