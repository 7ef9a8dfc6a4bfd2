"""`labelgen run`: every (teacher, shard) work item not yet done, as a resumable batch job.

Work items are idempotent: a label shard is published atomically and then recorded in its
column's manifest; a finished item is skipped, an interrupted one is redone from scratch. Items
are split statically across ranks (torchrun / SLURM) or claimed dynamically with expiring lock
files (`--claim`). Adding a teacher writes only its own column.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import pipeline
from labelgen.batching import DeviceFailure
from labelgen.settings import RunSettings, inference_precision
from labelgen.shard_job import ShardJob, label_shard
from labelgen.teachers import TeacherSpec, load_teacher, weights_identity
from pipeline.dataset import DatasetInfo, ShardInfo, load_dataset
from pipeline.dataset.layout import shard_name
from pipeline.dataset.plan import load_plan_shard
from pipeline.labels.codecs import get_codec
from pipeline.labels.manifest import (
    ColumnManifest,
    create_or_check,
    made_from_other_images,
    manifest_lock,
    manifest_path,
    record_shard,
    shard_entry,
    shard_nbytes,
)
from pipeline.labels.store import BACKENDS
from pipeline.toolkit.claims import try_claim, worker_id
from pipeline.toolkit.devices import resolve_device, use_device
from pipeline.toolkit.distributed import WorkerInfo, my_share, worker_info

log = logging.getLogger("labelgen")


@dataclass
class ColumnReport:
    column: str
    shards_done: list[str] = field(default_factory=list)
    shards_skipped: int = 0
    shards_failed: list[str] = field(default_factory=list)
    shards_held: list[str] = field(default_factory=list)  # claimed by another live worker
    images: int = 0
    views: int = 0
    failures: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        failed = "".join(f"\n  FAILED shard {f}" for f in self.shards_failed)
        if self.shards_held:
            failed += f"\n  shards held by other workers (--claim): {', '.join(self.shards_held)}"
        if not self.shards_done and not self.shards_failed and not self.shards_held:
            return f"{self.column}: nothing to do ({self.shards_skipped} shards already done)"
        rate = self.views / self.seconds if self.seconds else 0.0
        flags = ", ".join(f"{k}: {v}" for k, v in sorted(self.flags.items())) or "none"
        return (
            f"{self.column}: labelled {len(self.shards_done)} shards ({self.images} images, "
            f"{self.views} views, {rate:.1f} views/s); {self.failures} failed images; "
            f"flagged maps: {flags}"
        ) + failed


def _provenance(spec: TeacherSpec, teacher: Any, info: DatasetInfo, s: RunSettings) -> dict:
    prov = teacher.provenance()
    return {
        "column": spec.name,
        "teacher": spec.name,
        "adapter": spec.adapter,
        "weights": {"source": spec.source, "sha256": prov["weights_sha256"]},
        "output_kind": prov["output_kind"],
        "invariance": prov["invariance"],
        "input_rule": prov["input_rule"],
        "precision": prov["precision"],
        "codec": get_codec(s.codec).describe(),
        "backend": s.format,
        "plan_sha256": info.plan_hash,
        "code_version": pipeline.__version__,
        "extra": {"options": dict(spec.options)},
    }


def _done_shards(
    column_dir: Path,
    requested: dict[str, Any],
    overwrite: bool,
    names: set[str],
    images: dict[str, str],
) -> set[str]:
    """Shards already done for the requested identity (weights, plan, codec, backend).

    A column made with another identity is refused, or with `overwrite` counts nothing as done.
    A shard the manifest lists as done counts only while its file is there with the size the
    manifest recorded: a deleted or truncated shard is relabelled (a warning names it). Sizes
    only, no hashing (a flipped byte is `pipeline verify`'s to find; `--redo` relabels it).
    `names`: the shards to check. `images`: shard name -> the image shard's sha256 in
    dataset.json; a shard labelled from other images is relabelled.
    """
    manifest = ColumnManifest.load_or_none(manifest_path(column_dir))
    if manifest is None:
        return set()
    old = manifest.identity()
    diff = [k for k, v in requested.items() if old[k] != v]
    if diff and not overwrite:
        details = "; ".join(
            f"{_CHANGED[k]} ({_short(old[k])} there, {_short(requested[k])} now)" for k in diff
        )
        raise ValueError(
            f"label column {manifest.column!r} ({manifest_path(column_dir)}) was made with "
            f"{details}; use a new teacher name, or --overwrite to relabel the column"
        )
    if diff:
        return set()
    suffix = BACKENDS.get(manifest.backend).suffix
    return {
        name
        for name, entry in manifest.shards.items()
        if entry["status"] == "done"
        and name in names
        and _published_intact(column_dir / f"{name}{suffix}", entry)
        and _same_images(column_dir, name, entry, images)
    }


def _same_images(
    column_dir: Path, name: str, entry: dict[str, Any], images: dict[str, str]
) -> bool:
    """Whether a done shard was labelled from the image shard the dataset holds now."""
    if name not in images or not made_from_other_images(entry, images[name]):
        return True
    log.warning(
        "%s: shard %s was labelled from other images (the image shard was replaced since): "
        "relabelling it",
        column_dir,
        name,
    )
    return False


def _published_intact(path: Path, entry: dict[str, Any]) -> bool:
    """Whether a done shard's file exists with the size its manifest entry recorded."""
    try:
        size = shard_nbytes(path)
    except OSError:
        log.warning("%s is listed as done in the manifest but missing: relabelling it", path)
        return False
    recorded = entry.get("bytes")
    if recorded is not None and size != int(recorded):
        log.warning(
            "%s has %d bytes, the manifest recorded %d (truncated or replaced): relabelling it",
            path,
            size,
            int(recorded),
        )
        return False
    return True


def parse_shard_list(values: list[str] | None, info: DatasetInfo) -> set[str]:
    """`--redo` values (`000003`, `3`, `000001-000004`, comma-separated, repeatable) -> names of
    shards of the dataset; an unknown shard is an error."""
    known = sorted(shard.name for shard in info.shards)
    out: set[str] = set()
    for part in (p.strip() for value in values or [] for p in value.split(",")):
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            lo, hi = int(first), int(last if sep else first)
        except ValueError:
            raise ValueError(
                f"--redo {part!r}: expected shard numbers such as 000003 or 000001-000004"
            ) from None
        if lo > hi or shard_name(lo) not in known or shard_name(hi) not in known:
            have = f"{known[0]} to {known[-1]}" if known else "none"
            raise ValueError(f"--redo {part!r}: no such shard in this dataset (it has {have})")
        out |= {name for name in known if lo <= int(name) <= hi}
    return out


_CHANGED = {
    "weights.sha256": "other weights",
    "plan_sha256": "another crop plan",
    "codec": "another codec",
    "backend": "another backend",
    "precision": "another precision",
    "extra.options": "other teacher options",
}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:12] if isinstance(value, str) and len(text) == 64 else text


def _open_column(column_dir: Path, provenance: dict, overwrite: bool) -> None:
    """Create or check the manifest header; with `overwrite`, replace a differing header and
    drop its shard entries (every shard is then relabelled)."""
    try:
        create_or_check(column_dir, provenance)
        return
    except ValueError:
        if not overwrite:
            raise
    with manifest_lock(column_dir):  # re-checked under the lock: another rank may have done it
        path = manifest_path(column_dir)
        new = ColumnManifest.from_dict({**provenance, "shards": {}}, str(path))
        if ColumnManifest.load(path).identity() != new.identity():
            new.save(path)
            log.warning("%s: replaced the column header (--overwrite); all shards are redone", path)


def _record_failure(column_dir: Path, shard: str, error: str) -> None:
    """Record a shard as failed, unless the manifest holds it as done with its file intact: a
    failed `--redo`, or a worker that lost its claim while another finished the shard, leaves
    the published labels valid, and they must stay usable."""
    with manifest_lock(column_dir):
        manifest = ColumnManifest.load_or_none(manifest_path(column_dir))
        entry = manifest.shards.get(shard) if manifest is not None else None
        if entry is not None and entry["status"] == "done":
            suffix = BACKENDS.get(manifest.backend).suffix
            if _published_intact(column_dir / f"{shard}{suffix}", entry):
                log.warning("%s shard %s: kept the done labels published", column_dir, shard)
                return
    record_shard(column_dir, shard, shard_entry("failed", error=error))


def _clear_stale_temporaries(column_dir: Path, shard: str) -> None:
    """A killed run leaves hidden temporaries of the shard it was writing; drop them."""
    for tmp in column_dir.glob(f".{shard}.*.tmp"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def host_predictor(teacher: Any, device: torch.device):
    """uint8 `[B,3,h,w]` on the host -> float32 `[B,1,h,w]` on the host.

    On a GPU the result is copied back asynchronously into pinned memory: the returned tensor
    carries a CUDA event (`.ready`) that readers wait for, so the host thread goes on to launch
    the next batch while the copy runs.
    """

    def predict(batch: torch.Tensor) -> torch.Tensor:
        if device.type != "cuda":
            return teacher.predict(batch.float().div_(255.0)).float()
        x = batch.pin_memory().to(device, non_blocking=True).float().div_(255.0)
        out = teacher.predict(x).float()
        host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(out, non_blocking=True)
        host.ready = torch.cuda.Event()
        host.ready.record(torch.cuda.current_stream(device))  # the stream that runs the copy
        return host

    return predict


@dataclass
class _Context:
    info: DatasetInfo
    settings: RunSettings
    worker: WorkerInfo
    device: torch.device
    owner: str
    redo: set[str] = field(default_factory=set)  # shards relabelled even if done (--redo)


def _label_item(
    ctx: _Context,
    spec: TeacherSpec,
    teacher: Any,
    shard: ShardInfo,
    bar: tqdm,
    report: ColumnReport,
) -> None:
    layout, s = ctx.info.layout, ctx.settings
    column_dir = layout.column_dir(spec.name)
    out = layout.label_shard(spec.name, shard.index, BACKENDS.get(s.format).suffix)
    _clear_stale_temporaries(column_dir, shard.name)
    job = ShardJob(
        image_shard=layout.image_shard(shard.index),
        plan=load_plan_shard(layout.plan_shard(shard.index)),
        plan_sha256=shard.plan_sha256,
        out=out,
        backend=s.format,
        codec=s.codec,
        tile=int(ctx.info.raw["plan_params"]["tile"]),
        meta={"column": spec.name, "shard": shard.name},
    )

    def on_image(n_views: int) -> None:
        report.images += 1
        report.views += n_views
        bar.update()
        bar.set_postfix_str(f"{report.views / max(bar.format_dict['elapsed'], 1e-9):.1f} views/s")

    summary, batcher = label_shard(
        job,
        host_predictor(teacher, ctx.device),
        teacher.full_view_size,
        {"kind": teacher.output_kind},
        s.batch_size,
        s.workers,
        s.encode_threads,
        on_image,
    )
    entry = summary.manifest_entry()
    entry["weights_sha256"] = teacher.weights_sha256
    entry["batch_size"] = s.batch_size  # label bytes depend on it (see README): a relabel reuses it
    entry["image_sha256"] = shard.image_sha256  # the images labelled (replaced ones are detected)
    record_shard(column_dir, shard.name, entry)
    report.shards_done.append(shard.name)
    report.failures += len(summary.failures)
    for flag, n in summary.flags.items():
        report.flags[flag] = report.flags.get(flag, 0) + n
    if batcher.oom_retries:
        log.warning(
            "%s shard %s: %d batches split after out-of-memory",
            spec.name,
            shard.name,
            batcher.oom_retries,
        )


def _requested_identity(
    spec: TeacherSpec, info: DatasetInfo, s: RunSettings, precision: str
) -> dict[str, Any]:
    """The column identity fields known without loading the model."""
    return {
        "weights.sha256": weights_identity(spec),
        "plan_sha256": info.plan_hash,
        "codec": get_codec(s.codec).describe(),
        "backend": s.format,
        "precision": precision,
        "extra.options": dict(spec.options),
    }


def _run_teacher(ctx: _Context, spec: TeacherSpec) -> ColumnReport:
    s, info = ctx.settings, ctx.info
    column_dir = info.layout.column_dir(spec.name)
    precision = inference_precision(s, ctx.device)
    requested = _requested_identity(spec, info, s, precision)
    candidates = info.shards if s.claim else my_share(info.shards, ctx.worker)
    images = {shard.name: shard.image_sha256 for shard in info.shards}
    done = _done_shards(
        column_dir, requested, s.overwrite, {shard.name for shard in candidates}, images
    )
    todo = [shard for shard in candidates if shard.name in ctx.redo or shard.name not in done]
    report = ColumnReport(spec.name, shards_skipped=len(candidates) - len(todo))
    if not todo:
        return report
    teacher = load_teacher(spec, device=str(ctx.device), precision=precision)
    _open_column(column_dir, _provenance(spec, teacher, info, s), s.overwrite)
    started = time.perf_counter()
    total = sum(shard.count for shard in todo)
    with tqdm(
        total=total,
        desc=f"{spec.name} [{ctx.worker}]",
        unit="img",
        disable=not s.progress,
        dynamic_ncols=True,
    ) as bar:
        for shard in todo:
            claim = (
                try_claim(column_dir / ".claims", shard.name, ctx.owner, s.claim_ttl)
                if s.claim
                else None
            )
            if s.claim and (
                claim is None
                or (
                    shard.name not in ctx.redo
                    and shard.name
                    in _done_shards(column_dir, requested, False, {shard.name}, images)
                )
            ):
                if claim is None:
                    report.shards_held.append(shard.name)
                else:
                    claim.release()
                bar.update(shard.count)
                continue
            try:
                _label_item(ctx, spec, teacher, shard, bar, report)
            except DeviceFailure as e:  # every later shard would fail too: stop the job
                _record_failure(column_dir, shard.name, str(e))
                raise
            except Exception as e:  # noqa: BLE001 - recorded in the manifest, the job goes on
                log.exception("%s shard %s failed", spec.name, shard.name)
                error = f"{type(e).__name__}: {e}"
                _record_failure(column_dir, shard.name, error)
                report.shards_failed.append(f"{shard.name}: {error}")
            finally:
                if claim is not None:
                    claim.release()
    report.seconds = time.perf_counter() - started
    log.info("%s %s: labelled shards %s", ctx.worker, spec.name, report.shards_done)
    return report


def run(
    dataset: Path | str,
    specs: list[TeacherSpec],
    settings: RunSettings,
    env: dict[str, str] | None = None,
    redo: list[str] | None = None,
) -> list[ColumnReport]:
    """Label every (teacher, shard) item of this worker's share that is not done yet.

    `redo`: shards (`--redo` syntax, see `parse_shard_list`) relabelled even if done, e.g. one
    that `pipeline verify` found corrupt.
    """
    settings.validate()
    if not specs:
        raise ValueError("no teacher given: pass --teacher NAME=ADAPTER:SOURCE (repeatable)")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"teacher names must be unique, got {names}")
    worker = worker_info(env)
    device = resolve_device(settings.device)
    use_device(device)
    info = load_dataset(dataset)
    ctx = _Context(info, settings, worker, device, worker_id(), parse_shard_list(redo, info))
    return [_run_teacher(ctx, spec) for spec in specs]
