"""`DistillStream`: the training stream of pre-collated batches over images, plans and labels.

Reads image shard i, plan shard i and the teacher columns' label shard i in lockstep (keys
checked equal, `shards.py`), and yields *batches* (dicts, see `student.data`), so that a whole
batch can carry one teacher. What each rank, worker and step gets is decided by the pure
functions of `schedule.py`:

- Epoch order: shards shuffled by (seed, epoch), the usable keys of each shard permuted by
  (seed, epoch, shard). Usable = not listed as failed in any chosen column's manifest; keys whose
  label record has an error are skipped and counted (logged once per shard; `skipped` holds the
  counts known from the manifests before training starts).
- Node split: rank r takes a contiguous `steps × batch` run of that order, with
  `steps = floor(usable / (world × batch))`, so every rank runs exactly `steps` batches on
  disjoint samples whatever the shard sizes (a rank may open a shard another rank also reads).
- Worker split: DataLoader worker w of W makes the rank's steps `w, w + W, ...` from the next
  slice of the rank's run: the order in which the DataLoader hands batches out, so the loader
  yields steps 0, 1, 2, ... in order. Each worker opens its own files lazily.
- Within a worker a shuffle buffer of `shuffle_buffer` sample references (shard, key: no pixels,
  so a large buffer is cheap) is seeded by (seed, epoch, rank, worker).
- Teachers: by default one teacher per optimizer iteration (`accumulate` consecutive steps),
  drawn with `teacher_weights` from (seed, epoch, iteration) — the same on every rank, worker and
  micro-batch, so one optimizer iteration uses one teacher everywhere. The steps per epoch are a
  multiple of `accumulate`. With `per_sample_teacher=True` each sample draws its own. With
  `teacher_roles` and no weights, the primary draws 0.7 and the assistants 0.3; with
  `teacher_mix=average` every sample learns from the fused label of all teachers (`fusion.py`;
  `teacher_index` -1, teacher `average`).
- Per sample, from a generator seeded by (seed, epoch, rank, step, slot): the teacher (per-sample
  mode), the region k, the flip and the photometric augmentation. A (seed, epoch) with the same
  world size, batch size and worker count reproduces the stream exactly.
- Resume: `state_dict()` is (epoch, batches consumed), kept by `schedule.ResumePosition`; after
  `load_state_dict` the epoch is regenerated and its first batches are skipped by walking sample
  references only (no image or label is decoded for a skipped batch).

If label records report errors the manifests did not list, a worker can run short of samples; it
then starts another pass over its slice (resampling, with a warning) to make its quota.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.dataset import DatasetInfo
from pipeline.dataset.info import as_dataset
from pipeline.labels.column import LabelColumn
from pipeline.labels.manifest import ColumnManifest
from pipeline.toolkit.distributed import rank_and_world
from student.config import DataSettings
from student.data import fusion
from student.data import schedule as sch
from student.data.columns import (
    check_columns,
    failed_keys,
    label_conversion,
    skip_counts,
    usable_counts,
)
from student.data.samples import (
    BASELINE_REGION,
    baseline_sample,
    collate,
    cross_context_sample,
    region_views,
)
from student.data.shards import ColumnSpec, OpenShard, ShardPool, describe_errors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleRef:
    """A sample not yet decoded: which shard and key."""

    shard: int
    key: str


def current_worker() -> tuple[int, int]:
    """`(worker id, number of workers)` of the DataLoader worker running this, else (0, 1)."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def steps_per_epoch(
    dataset: DatasetInfo | Path | str,
    teachers: Sequence[str],
    *,
    world: int,
    batch_size: int,
    accumulate: int = 1,
) -> int:
    """Batches every rank runs per epoch: floor(usable samples / (world × batch_size)), rounded
    down to a multiple of `accumulate`."""
    info = as_dataset(dataset)
    counts = usable_counts(info, check_columns(info, list(teachers)))
    return sch.steps_for(sum(counts), world, batch_size, accumulate)


class DistillStream(IterableDataset):
    """Iterable of pre-collated batches for one rank; see the module docstring.

    `data`: what the student reads (`student.config.DataSettings`: mode, teacher weights, teacher
    per sample, input size, shuffle buffer, augmentation; its `workers` are the loader's, see
    `make_loader`); None: the defaults. `batch_size`, `seed` and `accumulate` (micro-batches per
    optimizer iteration, which share a teacher) are the training's; `rank` and `world` default to
    the launcher's; `epoch` is the first epoch to stream.

    `max_tiles`: use at most this many tiles of a region per sample, a random subset drawn per
    sample (None: all; an unbiased estimate of the local-global term that bounds label decoding
    and batch memory on large images). `reduced_decode`: let JPEG decoding shrink an image by
    2/4/8 when the crop is shrunk at least that much anyway (`shards.decode_reduced`; False:
    always decode at full size, as `decode_rgb`). `metric`: a metric student's stream (metric
    columns read in metres, `columns.label_conversion`).

    Use with `student.data.loader.make_loader` (a DataLoader with `batch_size=None`). Call
    `set_epoch(e)` before each epoch (persistent workers would not see it).
    """

    def __init__(
        self,
        dataset_dir: DatasetInfo | Path | str,
        teachers: Sequence[str],
        data: DataSettings | None = None,
        *,
        batch_size: int = 4,
        seed: int = 0,
        accumulate: int = 1,
        rank: int | None = None,
        world: int | None = None,
        epoch: int = 0,
        max_tiles: int | None = None,
        reduced_decode: bool = True,
        metric: bool = False,
    ) -> None:
        super().__init__()
        data = data if data is not None else DataSettings()
        _check_args(batch_size, seed, epoch, max_tiles)
        self.max_tiles, self.reduced_decode, self.metric = max_tiles, reduced_decode, metric
        self.info = as_dataset(dataset_dir)
        self.teachers = list(teachers)
        manifests = check_columns(self.info, self.teachers, data.max_unusable)
        self.columns = {name: self._spec(name, m) for name, m in manifests.items()}
        self.invariances = {name: m.invariance for name, m in manifests.items()}
        self.probabilities = fusion.teacher_probabilities(self.teachers, data)
        self.mix, self.average_keep = data.teacher_mix, data.average_keep
        self._failed = {s: set(keys) for s, keys in failed_keys(manifests).items()}
        self.usable = usable_counts(self.info, manifests)
        self.skipped = skip_counts(failed_keys(manifests))
        self.mode, self.batch_size, self.seed = data.mode, batch_size, seed
        self.per_sample_teacher, self.shuffle_buffer = data.per_sample_teacher, data.shuffle_buffer
        self.size, self.augment = data.size, data.augment
        self.rank, self.world = rank_and_world(rank, world)
        self.accumulate = accumulate
        self.steps = sch.steps_for(sum(self.usable), self.world, batch_size, accumulate)
        if self.steps == 0:
            raise ValueError(
                f"{self.info.layout.root}: {sum(self.usable)} usable samples are fewer than "
                f"world size × batch size × accumulate = {self.world} × {batch_size} × "
                f"{accumulate}; use a smaller batch or fewer accumulation steps"
            )
        self.position = sch.ResumePosition(self.steps, epoch)
        self.loader_workers = 0  # set by `make_loader`: the sample order depends on it
        self.stats: Counter[str] = Counter()

    def _spec(self, name: str, manifest: ColumnManifest) -> ColumnSpec:
        return ColumnSpec(
            LabelColumn(self.info, name, manifest), label_conversion(manifest, self.metric)
        )

    # -- epochs and resume ---------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return self.steps

    @property
    def steps_per_epoch(self) -> int:
        return self.steps

    @property
    def epoch(self) -> int:
        """The epoch streamed next."""
        return self.position.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to stream; a pending resume position is kept only for its epoch."""
        self.position.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        """The position: the next batch is batch `batches` of epoch `epoch` (plus the settings
        the order depends on, checked on load)."""
        return self.position.state(self._order_settings())

    def _order_settings(self) -> dict[str, int]:
        """The settings the sample order depends on (0 loader workers orders as 1 does)."""
        return {
            "seed": self.seed,
            "world": self.world,
            "batch_size": self.batch_size,
            "workers": max(1, self.loader_workers),
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Resume at `state`: the next iteration regenerates its epoch and skips its batches."""
        self.position.load(state, self._order_settings())

    def note_batch(self, batch: Mapping[str, Any]) -> None:
        """Record that `batch` was handed to the training loop (the loader calls this)."""
        self.position.note(batch["epoch"], batch["step"])

    def begin_iteration(self) -> None:
        """An iteration starts at the resume position (0 unless `load_state_dict` set one)."""
        self.position.begin()

    # -- iteration -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        physical, workers = current_worker()
        if get_worker_info() is None:
            self.begin_iteration()
        skip = self.position.skip
        worker = sch.logical_worker(physical, workers, skip)
        pool = ShardPool(self.info, self.columns)
        refs = self._refs(pool, worker, workers)
        dropped = sch.batches_to_skip(skip, workers, worker)
        try:
            for j in range(sch.worker_quota(self.steps, workers, worker)):
                step = sch.step_of(j, workers, worker)
                chunk = [next(refs) for _ in range(self.batch_size)]
                batch = None if j < dropped else self._batch(pool, chunk, step)
                for ref in chunk:
                    pool.drop(ref.shard)
                if batch is not None:
                    if get_worker_info() is None:
                        self.note_batch(batch)
                    yield batch
        finally:
            refs.close()
            pool.close_all()

    def _refs(self, pool: ShardPool, worker: int, workers: int) -> Iterator[SampleRef]:
        """The worker's sample references, shuffled; further passes only if it runs short."""
        start, stop = sch.worker_range(self.steps, self.batch_size, self.rank, workers, worker)
        if start == stop:
            return
        order = sch.shard_order(len(self.info.shards), self.seed, self.epoch)
        pieces = sch.pieces_for(order, self.usable, start, stop)
        for cycle in itertools.count():
            if cycle:
                log.warning(
                    "rank %d worker %d: label errors not listed in the manifests left it short "
                    "of samples; resampling its slice (pass %d)",
                    self.rank,
                    worker,
                    cycle + 1,
                )
            rng = sch.rng_for(self.seed, sch.TAG_BUFFER, self.epoch, self.rank, worker, cycle)
            count = 0
            for ref in sch.shuffled(self._walk(pool, pieces), self.shuffle_buffer, rng):
                count += 1
                yield ref
            if count == 0:
                raise RuntimeError(
                    f"rank {self.rank} worker {worker}: no usable sample in its slice of "
                    f"{self.info.layout.root} (every label record has an error)"
                )

    def _walk(self, pool: ShardPool, pieces: list[sch.Piece]) -> Iterator[SampleRef]:
        """References in the epoch order; each holds its shard open until dropped."""
        for piece in pieces:
            shard = pool.hold(piece.shard)
            try:
                usable = self._usable_keys(shard)
                perm = sch.key_permutation(len(usable), self.seed, self.epoch, piece.shard)
                errors: dict[str, dict[str, str]] = {}
                for i in perm[piece.start : piece.stop]:
                    errs = shard.errors(usable[i])
                    if errs:
                        errors[usable[i]] = errs
                        continue
                    pool.hold(piece.shard)
                    yield SampleRef(piece.shard, usable[i])
                self._report_unexpected(shard, errors)
            finally:
                pool.drop(piece.shard)

    def _usable_keys(self, shard: OpenShard) -> list[str]:
        failed = self._failed.get(shard.name, set())
        if failed:
            self.stats["skipped_label_errors"] += len(failed)
            log.info(
                "shard %s: skipping %d keys whose labels failed (manifests): %s",
                shard.name,
                len(failed),
                ", ".join(sorted(failed)[:5]),
            )
        usable = [k for k in shard.keys if k not in failed]
        if len(usable) != self.usable[shard.index]:
            raise RuntimeError(
                f"shard {shard.name}: the manifests list failed keys that are not in the shard "
                f"({sorted(failed - set(shard.keys))[:5]}); the label columns are inconsistent"
            )
        return usable

    def _report_unexpected(self, shard: OpenShard, errors: dict[str, dict[str, str]]) -> None:
        if errors:
            self.stats["skipped_unlisted_errors"] += len(errors)
            log.warning(
                "shard %s: skipping %d keys whose label records have an error the manifest does "
                "not list: %s",
                shard.name,
                len(errors),
                describe_errors(errors),
            )

    # -- samples -------------------------------------------------------------------------------
    def _batch(self, pool: ShardPool, chunk: list[SampleRef], step: int) -> dict[str, Any]:
        fixed = sch.teacher_for_step(
            self.probabilities, self.seed, self.epoch, step, self.accumulate
        )
        samples, indices = [], []
        for slot, ref in enumerate(chunk):
            rng = sch.sample_rng(self.seed, self.epoch, self.rank, step, slot)
            u = float(rng.random())  # always drawn, so both teacher modes share the sequence
            t = sch.pick(self.probabilities, u) if self.per_sample_teacher else fixed
            if self.mix == fusion.AVERAGE:
                t = -1
            samples.append(self._sample(pool.get(ref.shard), ref.key, t, rng))
            indices.append(t)
        batch = collate(samples)
        batch["teacher_index"] = torch.tensor(indices, dtype=torch.int64)
        batch["epoch"], batch["step"] = self.epoch, step
        return batch

    def _reader(self, shard: OpenShard, key: str, t: int) -> tuple[str, Any]:
        """The teacher name a sample records and its `read(map name)`: teacher `t`'s labels, or
        with t = -1 the fused label of all teachers (`teacher_mix=average`)."""
        if t >= 0:
            return self.teachers[t], functools.partial(shard.read, self.teachers[t], key)
        keep = self.average_keep
        return fusion.AVERAGE, fusion.fused_reader(
            shard.read, key, self.teachers, self.probabilities, keep
        )

    def _sample(self, shard: OpenShard, key: str, t: int, rng: Any) -> dict[str, Any]:
        """Draws (in this order): region (cross-context), flip, tile subset, augmentation."""
        entry = shard.plans[key]
        height, width = entry["size"]
        teacher, read = self._reader(shard, key, t)
        common = {"size": self.size, "augment": self.augment, "key": key, "teacher": teacher}
        if self.mode == "baseline":
            flip = bool(rng.random() < self.augment.flip_p)
            rgb, d = shard.image(key, self._request(width, height, width, height))
            common["focal"] = shard.focal(key, BASELINE_REGION, self.size)
            return baseline_sample(
                rgb, read, flip=flip, rng=rng, reduction=d, image_size=(height, width), **common
            )
        region = int(rng.integers(len(entry["regions"])))
        flip = bool(rng.random() < self.augment.flip_p)
        box, tiles = region_views(entry, region)
        chosen = None
        if self.max_tiles is not None and len(tiles) > self.max_tiles:
            chosen = sorted(int(j) for j in rng.choice(len(tiles), self.max_tiles, replace=False))
        side = box[2] - box[0]
        rgb, d = shard.image(key, self._request(width, height, side, side))
        return cross_context_sample(
            rgb,
            entry,
            read,
            region=region,
            flip=flip,
            rng=rng,
            reduction=d,
            tile_indices=chosen,
            focal=shard.focal(key, region, self.size),
            **common,
        )

    def _request(self, width: int, height: int, crop_w: int, crop_h: int) -> tuple[int, int] | None:
        """The smallest decode size (W, H) that keeps a `crop_w × crop_h` crop ≥ S×S pixels."""
        if not self.reduced_decode:
            return None
        return -(-width * self.size // crop_w), -(-height * self.size // crop_h)


def _check_args(batch_size: int, seed: int, epoch: int, max_tiles: int | None) -> None:
    """The stream's own arguments (`DataSettings` checks itself when it is built)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be ≥ 0, got seed={seed}, epoch={epoch}")
    if max_tiles is not None and max_tiles < 1:
        raise ValueError(f"max_tiles must be ≥ 1 or None (all tiles), got {max_tiles}")
