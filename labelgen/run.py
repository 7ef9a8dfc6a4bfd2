"""`labelgen run`: every (teacher, shard) work item not yet done, as a resumable batch job.

Work items are idempotent: a label shard is published atomically and then recorded in its
column's manifest; a finished item is skipped, an interrupted one is redone from scratch. Items
are split statically across ranks (torchrun / SLURM) or claimed dynamically with expiring lock
files (`--claim`). Adding a teacher writes only its own column. Which shards of a column count
as done, and how they are recorded: `pipeline.labels.column.LabelColumn`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from labelgen.batching import DeviceFailure
from labelgen.provenance import provenance, requested_identity
from labelgen.report import ColumnReport
from labelgen.settings import RunSettings, inference_precision, labelling_launch
from labelgen.shard_job import LabelSettings, ShardJob, label_shard
from labelgen.teachers import ResolvedTeacher, TeacherSpec, load_teacher, resolve_teacher
from pipeline.dataset import DatasetInfo, ShardInfo, load_dataset
from pipeline.dataset.plan import load_plan_shard
from pipeline.labels.column import FAILED, NOT_LABELLED, LabelColumn
from pipeline.labels.commands import parse_shard_ranges
from pipeline.labels.identity import ColumnIdentity
from pipeline.toolkit.claims import Claim, LockInfo, claim_or_wait, expires_in, try_claim, worker_id
from pipeline.toolkit.devices import resolve_device, use_device
from pipeline.toolkit.distributed import WorkerInfo, my_share, worker_info
from pipeline.toolkit.faults import disk_fault
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.progress import Progress, progress_bar

log = logging.getLogger("labelgen")
T = TypeVar("T")
RUN_LOCK_TTL = 60.0
"""Seconds a plain run's column lock (`_run_lock`) outlives its last refresh (every 15 s)."""


@dataclass
class _Context:
    info: DatasetInfo
    settings: RunSettings
    launch: Launch
    worker: WorkerInfo
    device: torch.device
    owner: str
    redo: set[str] = field(default_factory=set)  # shards relabelled even if done (--redo)
    only: set[str] | None = None  # the shards this run may label (--shards; None: all)


@dataclass
class _Item:
    """One teacher's part of the job: the teacher resolved once, its column, the identity it
    asks for, its report."""

    resolved: ResolvedTeacher
    column: LabelColumn
    requested: ColumnIdentity
    report: ColumnReport
    teacher: Any = None
    how: LabelSettings | None = None


def _done_shards(item: _Item, overwrite: bool, names: set[str], warn: bool = True) -> set[str]:
    """Shards of `names` done for the requested identity: usable by the rule every command
    applies (`LabelColumn.check_shard`); a done shard that is not (deleted, truncated, labelled
    from replaced images) is relabelled, with a warning. Another identity is refused, or with
    `overwrite` counts nothing as done. Sizes only: a flipped byte is `pipeline verify`'s."""
    if not item.column.same_identity(item.requested, overwrite):
        return set()
    done = set()
    for check in item.column.check_shards(names):
        if check.usable:
            done.add(check.shard)
        elif warn and check.status not in (NOT_LABELLED, FAILED):
            log.warning("%s: relabelling it", check.describe())
    return done


def _label_item(ctx: _Context, item: _Item, shard: ShardInfo, bar: Progress) -> None:
    layout, s, column, report = ctx.info.layout, ctx.settings, item.column, item.report
    column.clear_stale_temporaries(shard)
    job = ShardJob(
        image_shard=layout.image_shard(shard.index),
        plan=load_plan_shard(layout.plan_shard(shard.index)),
        plan_sha256=shard.plan_sha256,
        out=column.shard_path(shard.index),
        backend=s.format,
        codec=s.codec,
        tile=ctx.info.plan_params.tile,
        meta={"column": column.name, "shard": shard.name},
        cameras=ctx.info.shard_intrinsics(shard.index),
    )
    summary, batcher = label_shard(job, item.how, report.counter(bar))
    entry = summary.manifest_entry()
    entry["weights_sha256"] = item.requested.weights_sha256
    entry["batch_size"] = s.batch_size  # label bytes depend on it (see README): a relabel reuses it
    entry["image_sha256"] = shard.image_sha256  # the images labelled (replaced ones are detected)
    column.record_done(shard, entry)
    report.add_shard(shard.name, entry)
    if batcher.oom_retries:
        log.warning(
            "%s shard %s: %d batches split after out-of-memory",
            column.name,
            shard.name,
            batcher.oom_retries,
        )


def _label_or_fail(ctx: _Context, item: _Item, shard: ShardInfo, bar: Progress) -> None:
    """`_label_item`; a failure is recorded in the manifest and reported."""
    try:
        _label_item(ctx, item, shard, bar)
    except DeviceFailure as e:  # every later shard would fail too: stop the job
        _record_failure(item, shard, str(e))
        raise
    except Exception as e:  # noqa: BLE001 - recorded in the manifest, the job goes on
        if disk_fault(e) is not None:  # a full or read-only disk fails every shard: stop
            raise
        log.exception("%s shard %s failed", item.column.name, shard.name)
        error = f"{type(e).__name__}: {e}"
        _record_failure(item, shard, error)
        item.report.add_failed(shard.name, error)


def _record_failure(item: _Item, shard: ShardInfo, error: str) -> None:
    if not item.column.record_failed(shard, error):  # the done labels are still usable
        log.warning("%s shard %s: kept the done labels published", item.column.dir, shard.name)


def _claim(ctx: _Context, item: _Item, shard: ShardInfo) -> tuple[bool, Claim | None]:
    """`(take, claim)`: with `--claim`, take the shard only when this worker claimed it and no
    other finished it meanwhile (one held by another live worker is reported)."""
    s = ctx.settings
    if not s.claim:
        return True, None
    claims = item.column.dir / ".claims"
    claim = try_claim(claims, shard.name, ctx.owner, s.claim_ttl)
    if claim is None:
        item.report.shards_held.append(shard.name)
        left = expires_in(claims, shard.name, s.claim_ttl) or 0.0
        item.report.held_expires_in = max(item.report.held_expires_in, left)
        return False, None
    if shard.name not in ctx.redo and shard.name in _done_shards(item, False, {shard.name}):
        claim.release()
        return False, None
    return True, claim


def _run_lock(ctx: _Context, column: LabelColumn) -> Claim | None:
    """The lock a plain (not `--claim`) run holds on a column while it labels it, one per rank:
    a second run of the same rank on the same column (started by accident) is refused with a
    plain message instead of both writing the same shards. The lock of a run that died is taken
    over (at once on this host, `RUN_LOCK_TTL` after its last refresh from another host)."""
    if ctx.settings.claim:
        return None
    w = ctx.worker
    name = f"run-rank{w.rank}-of-{w.world_size}"
    held = claim_or_wait(column.dir / ".claims", name, ctx.owner, RUN_LOCK_TTL)
    if isinstance(held, LockInfo):
        raise FileExistsError(
            f"{column.dir}: another `labelgen run` is labelling this column as rank {w.rank} of "
            f"{w.world_size} ({held.describe()}); let it finish or stop it, then run again (to "
            "share a column's shards between runs, start each with --claim)"
        )
    return held


def job_share(items: list[T], worker: WorkerInfo, tasks_per_job: int = 1) -> list[T]:
    """The items of `worker` (rank t of T) when each of the T processes plays `tasks_per_job` (N)
    workers of a static split into T*N: the shares of workers t, t+T, ..., t+(N-1)T, in that
    order. Over all T processes, every item once."""
    world = worker.world_size * tasks_per_job
    ranks = range(worker.rank, world, worker.world_size)
    return [x for r in ranks for x in my_share(items, WorkerInfo(r, world, worker.source))]


def _candidates(ctx: _Context) -> list[ShardInfo]:
    """The shards this run may label (`--shards` and `--redo`; all when neither restricts), in
    dataset order; split between the workers in the order of this list."""
    if ctx.only is None:
        return list(ctx.info.shards)
    return [shard for shard in ctx.info.shards if shard.name in ctx.only | ctx.redo]


def _todo(ctx: _Context, item: _Item, warn: bool = True) -> list[ShardInfo]:
    """This worker's shards of the column that are not done (or are redone, `--redo`)."""
    s, shards = ctx.settings, _candidates(ctx)
    candidates = shards if s.claim else job_share(shards, ctx.worker, s.tasks_per_job)
    done = _done_shards(item, s.overwrite, {shard.name for shard in candidates}, warn)
    todo = [shard for shard in candidates if shard.name in ctx.redo or shard.name not in done]
    item.report.shards_skipped = len(candidates) - len(todo)
    return todo


def _run_teacher(ctx: _Context, spec: TeacherSpec) -> ColumnReport:
    column = LabelColumn(ctx.info, spec.name)
    precision = inference_precision(ctx.launch.precision, ctx.device)
    resolved = resolve_teacher(spec)  # the one resolution (and weights hash) of the job
    requested = requested_identity(column, resolved, ctx.settings, precision)
    item = _Item(resolved, column, requested, ColumnReport(spec.name))
    if not _todo(ctx, item, warn=False):
        return item.report
    lock = _run_lock(ctx, column)
    try:
        todo = _todo(ctx, item)  # again: what another run finished before this one got the lock
        if todo:
            item.teacher = load_teacher(resolved, device=str(ctx.device), precision=precision)
            _label_todo(ctx, item, spec, todo)
    finally:
        if lock is not None:
            lock.release()
    return item.report


def _label_todo(ctx: _Context, item: _Item, spec: TeacherSpec, todo: list[ShardInfo]) -> None:
    s, column = ctx.settings, item.column
    if column.open(provenance(column, item.requested, item.teacher), s.overwrite):
        path = column.manifest_path
        log.warning("%s: replaced the column header (--overwrite); all shards are redone", path)
    item.how = LabelSettings.of(item.teacher, ctx.device, s, ctx.launch.workers)
    started = time.perf_counter()
    desc, total = f"{spec.name} [{ctx.worker}]", sum(shard.count for shard in todo)
    with progress_bar(total, desc, "img", enabled=ctx.launch.progress) as bar:
        for shard in todo:
            take, claim = _claim(ctx, item, shard)
            if not take:
                bar.update(shard.count)
                continue
            try:
                _label_or_fail(ctx, item, shard, bar)
            finally:
                if claim is not None:
                    claim.release()
    item.report.seconds = time.perf_counter() - started
    log.info("%s %s: labelled shards %s", ctx.worker, spec.name, item.report.shards_done)
    if item.report.shards_held:  # finished by their workers meanwhile: not held any more
        finished = _done_shards(item, False, set(item.report.shards_held), warn=False)
        item.report.shards_held = [n for n in item.report.shards_held if n not in finished]


def run(
    dataset: Path | str,
    specs: list[TeacherSpec],
    settings: RunSettings,
    env: dict[str, str] | None = None,
    redo: list[str] | None = None,
    launch: Launch | None = None,
    shards: list[str] | None = None,
) -> list[ColumnReport]:
    """Label every (teacher, shard) item of this worker's share that is not done yet, on
    `launch.device` in `launch.precision` (default: `labelgen.settings.LAUNCH_DEFAULTS`).

    `redo`: shards (`--redo` syntax, see `pipeline.labels.commands.parse_shard_ranges`) relabelled
    even if done, e.g. one that `pipeline verify` found corrupt. `shards` (same syntax): label
    only these (and the `redo` ones), split between the workers in their order (what `labelgen
    missing` prints); None: every shard of the dataset.
    """
    launch = labelling_launch(launch)
    if not specs:
        raise ValueError("no teacher given: pass --teacher NAME=ADAPTER:SOURCE (repeatable)")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"teacher names must be unique, got {names}")
    worker = worker_info(env)
    device = resolve_device(launch.device)
    use_device(device)
    info = load_dataset(dataset)
    redo_set = parse_shard_ranges(redo, info)
    only = None if shards is None else parse_shard_ranges(shards, info, "--shards")
    ctx = _Context(info, settings, launch, worker, device, worker_id(), redo_set, only)
    return [_run_teacher(ctx, spec) for spec in specs]
