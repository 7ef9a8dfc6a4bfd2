"""Pure functions deciding what every rank, DataLoader worker and step of an epoch gets.

Everything here is a function of integers (seed, epoch, rank, step, ...), so any process can
recompute any part of an epoch without talking to the others.

Epoch layout. The usable samples of an epoch (keys whose labels did not fail) are put in one
global order: shards shuffled by `(seed, epoch)`, and inside each shard its usable keys permuted
by `(seed, epoch, shard)` (shards have a random-access index, so this costs nothing). With
`steps = floor(usable / (world × batch))` every rank takes a contiguous range of `steps × batch`
samples of that order (rank r: `[r·steps·batch, (r+1)·steps·batch)`); the tail of fewer than
`world × batch` samples is dropped for this epoch (a different tail each epoch). Every rank thus
runs exactly `steps` batches and sees disjoint samples, whatever the shard sizes.

Within a rank, DataLoader worker w of W makes rank-local batches `b ≡ w (mod W)`, i.e. its j-th
batch is step `j·W + w`; that is the order in which `torch.utils.data.DataLoader` (in-order mode)
collects batches from its workers, so the loader yields steps 0, 1, 2, ... Worker w gets the
next `quota(w) × batch` samples of the rank's range.

Resume. `ResumePosition` is where a rank's stream stands in an epoch (batches handed to the
training loop) and where an iteration starts after a checkpoint: `logical_worker` and
`batches_to_skip` then turn that start into each worker's role and dropped batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")
log = logging.getLogger(__name__)

TAG_SHARDS, TAG_KEYS, TAG_BUFFER, TAG_SAMPLE, TAG_TEACHER = range(5)


def rng_for(seed: int, tag: int, *ids: int) -> np.random.Generator:
    """An independent generator for one purpose (`tag`) and one set of non-negative ids."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(tag), *map(int, ids)]))


@dataclass(frozen=True)
class Piece:
    """A run of samples of one shard: positions `[start, stop)` of its permuted usable keys."""

    shard: int
    """Index of the shard in the dataset's shard list."""
    start: int
    """First position (inclusive) in the shard's permuted usable keys."""
    stop: int
    """Last position (exclusive)."""


def shard_order(num_shards: int, seed: int, epoch: int) -> list[int]:
    """The epoch's shard order (a permutation of `range(num_shards)`)."""
    return [int(i) for i in rng_for(seed, TAG_SHARDS, epoch).permutation(num_shards)]


def key_permutation(count: int, seed: int, epoch: int, shard: int) -> list[int]:
    """The order of the usable keys of one shard in this epoch's global sample order."""
    return [int(i) for i in rng_for(seed, TAG_KEYS, epoch, shard).permutation(count)]


def steps_for(usable: int, world: int, batch_size: int, accumulate: int = 1) -> int:
    """Batches per rank per epoch: `floor(usable / (world × batch_size))`, rounded down to a
    multiple of `accumulate` (the micro-batches of one optimizer iteration never straddle two
    epochs)."""
    if world < 1 or batch_size < 1 or accumulate < 1:
        raise ValueError(
            f"world ({world}), batch size ({batch_size}) and accumulate ({accumulate}) must be ≥ 1"
        )
    steps = usable // (world * batch_size)
    return steps - steps % accumulate


def worker_quota(steps: int, workers: int, worker: int) -> int:
    """How many of a rank's `steps` batches DataLoader worker `worker` of `workers` makes."""
    return steps // workers + (1 if worker < steps % workers else 0)


def worker_range(
    steps: int, batch_size: int, rank: int, workers: int, worker: int
) -> tuple[int, int]:
    """`[start, stop)` in the epoch's global sample order for one worker of one rank."""
    start = rank * steps * batch_size
    start += batch_size * sum(worker_quota(steps, workers, w) for w in range(worker))
    return start, start + batch_size * worker_quota(steps, workers, worker)


def pieces_for(order: Sequence[int], counts: Sequence[int], start: int, stop: int) -> list[Piece]:
    """The pieces covering `[start, stop)` of the concatenation of shards `order`.

    `counts[i]` is the number of usable samples of shard i.
    """
    pieces: list[Piece] = []
    offset = 0
    for shard in order:
        lo, hi = max(start, offset), min(stop, offset + counts[shard])
        if lo < hi:
            pieces.append(Piece(shard, lo - offset, hi - offset))
        offset += counts[shard]
        if offset >= stop:
            break
    return pieces


def step_of(j: int, workers: int, worker: int) -> int:
    """The rank-local step of a worker's j-th batch."""
    return j * workers + worker


def logical_worker(physical: int, workers: int, skip: int) -> int:
    """The worker role (sample slice, steps, shuffle seed) DataLoader worker `physical` plays in
    an iteration that resumes after `skip` rank batches. The loader takes batches from workers
    0, 1, ... in turn, so worker 0 must play the role whose next step is `skip`; with the roles
    rotated, the steps come out as skip, skip + 1, ... and each role keeps its samples."""
    return (physical + skip) % workers


def batches_to_skip(skip: int, workers: int, worker: int) -> int:
    """How many of its first batches a worker drops to resume after `skip` rank batches."""
    return max(0, -(-(skip - worker) // workers))


@dataclass
class ResumePosition:
    """Where a rank's stream stands: the next batch handed out is batch `consumed` of epoch
    `epoch`, of `steps` per epoch; an iteration starts at batch `skip` (0 unless a checkpoint's
    position was loaded for this epoch)."""

    steps: int
    """Batches per epoch on this rank."""
    epoch: int = 0
    skip: int = 0
    consumed: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to stream; a pending resume position is kept only for its epoch."""
        if epoch != self.epoch:
            self.epoch, self.skip, self.consumed = int(epoch), 0, 0

    def state(self, order: Mapping[str, int]) -> dict[str, int]:
        """The position to save, `{"epoch", "batches"}`, with the settings `order` the sample
        order depends on (checked by `load`). A finished epoch saves the next one's start."""
        epoch, done = self.epoch, self.consumed
        if done >= self.steps:
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "batches": done, **order}

    def load(self, state: Mapping[str, int], order: Mapping[str, int]) -> None:
        """Resume at `state`: the next iteration starts at its batch. An order setting that
        differs from the saved one (`order`: now) is warned about, not refused."""
        for name, now in order.items():
            if name in state and state[name] != now:
                log.warning(
                    "resuming with %s=%s where the checkpoint had %s: the rest of epoch %s "
                    "follows a different order (%s batches are still skipped)",
                    name,
                    now,
                    state[name],
                    state["epoch"],
                    state["batches"],
                )
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if epoch < 0 or batches < 0:
            raise ValueError(f"invalid resume position {dict(state)}")
        if batches >= self.steps:  # a finished epoch (or fewer steps now): start the next one
            epoch, batches = epoch + 1, 0
        self.epoch, self.skip, self.consumed = epoch, batches, batches

    def note(self, epoch: int, step: int) -> None:
        """Record that rank-local step `step` of `epoch` was handed to the training loop."""
        if epoch == self.epoch:
            self.consumed = int(step) + 1
            if self.consumed >= self.steps:
                self.skip = 0  # the resume position is used up

    def begin(self) -> None:
        """An iteration starts at the resume position."""
        self.consumed = self.skip


def normalized_weights(teachers: Sequence[str], weights: object | None) -> list[float]:
    """Teacher weights as probabilities; `weights` a sequence, a `{teacher: w}` dict or None."""
    if weights is None:
        raw = [1.0] * len(teachers)
    elif isinstance(weights, dict):
        unknown = sorted(set(weights) - set(teachers))
        if unknown:
            raise ValueError(f"teacher_weights names {unknown}, which are not among {teachers}")
        raw = [float(weights.get(t, 0.0)) for t in teachers]
    else:
        raw = [float(w) for w in weights]  # type: ignore[union-attr]
        if len(raw) != len(teachers):
            raise ValueError(f"{len(raw)} teacher weights for {len(teachers)} teachers")
    if any(not np.isfinite(w) or w < 0 for w in raw) or sum(raw) <= 0:
        raise ValueError(f"teacher weights must be finite, ≥ 0 and not all 0; got {raw}")
    total = sum(raw)
    return [w / total for w in raw]


def pick(probabilities: Sequence[float], u: float) -> int:
    """The index whose cumulative probability interval holds `u` in [0, 1)."""
    acc = 0.0
    for i, p in enumerate(probabilities):
        acc += p
        if u < acc:
            return i
    return max(i for i, p in enumerate(probabilities) if p > 0)


def teacher_for_step(
    probabilities: Sequence[float], seed: int, epoch: int, step: int, accumulate: int = 1
) -> int:
    """The teacher of rank-local step `step`: the same on every rank and every worker, and on
    the `accumulate` micro-batches of one optimizer iteration (steps `i·accumulate ...`)."""
    iteration = step // accumulate
    return pick(probabilities, float(rng_for(seed, TAG_TEACHER, epoch, iteration).random()))


def sample_rng(seed: int, epoch: int, rank: int, step: int, slot: int) -> np.random.Generator:
    """The generator of one sample (region, flip, augmentation, per-sample teacher)."""
    return rng_for(seed, TAG_SAMPLE, epoch, rank, step, slot)


def shuffled(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """A shuffle buffer of `size` items: fill, then emit a random slot and refill it; drain the
    rest in random order at the end. `size` ≤ 1 keeps the order."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < max(size, 1):
            buffer.append(item)
            continue
        i = int(rng.integers(len(buffer)))
        out, buffer[i] = buffer[i], item
        yield out
    for i in rng.permutation(len(buffer)):
        yield buffer[int(i)]
