"""Label one image shard with one teacher: decode and build views in DataLoader workers, batch
the teacher on its device, and write the label shard from a writer thread, in key order.

The label shard is published atomically when every key is written, so a job killed at any moment
leaves no visible shard and the next run redoes the item from scratch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from labelgen.batching import (
    Done,
    FocalPredict,
    OrderedBatcher,
    Predict,
    device_failure,
    focal_host_predictor,
    host_predictor,
    is_broken_device,
)
from labelgen.settings import RunSettings
from labelgen.views import (
    FullSize,
    build_views,
    focal_record,
    view_cameras,
    view_focals,
    view_scales,
)
from pipeline.dataset.camera import Intrinsics
from pipeline.images.decode import decode_rgb
from pipeline.images.shards import ImageShardReader
from pipeline.labels.manifest import ShardSummary
from pipeline.labels.store import open_writer
from pipeline.toolkit.cpus import auto_workers
from pipeline.toolkit.workers import exit_with_parent


class ShardViews(Dataset):
    """Image `i` of one image shard as `(key, {view: uint8 [3,h,w]} | None, error | None)`.

    The shard is read by `ImageShardReader` (headers checked here, the file opened lazily in
    each DataLoader worker; members read by offset, never extracted).
    """

    def __init__(
        self,
        image_shard: Path,
        plan: dict[str, Any],
        tile: int,
        full_size: FullSize,
        full_interpolation: str,
    ):
        self.path, self.plan, self.tile, self.full_size = Path(image_shard), plan, tile, full_size
        self.full_interpolation = full_interpolation
        self.reader = ImageShardReader(self.path)
        missing = [key for key in plan if key not in self.reader]
        if missing:
            raise ValueError(
                f"{self.path}: {len(missing)} planned keys are not in the image shard "
                f"(first: {missing[0]!r}); the dataset is inconsistent, re-run `pipeline prepare`"
            )
        self.keys = list(plan)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[str, dict[str, torch.Tensor] | None, str | None]:
        key = self.keys[i]
        try:
            rgb = decode_rgb(self.reader.read(key)[0])
            views = build_views(
                rgb, self.plan[key], self.tile, self.full_size, self.full_interpolation
            )
            return key, views, None
        except Exception as e:  # noqa: BLE001 - recorded per image, the shard goes on
            return key, None, f"view building failed: {type(e).__name__}: {e}"


def _identity(item: Any) -> Any:
    return item


class OrderedWriter:
    """Encodes finished images in a thread pool and writes them in key order from a background
    thread, so the device never waits for compression or disk."""

    def __init__(
        self,
        writer: Any,
        record_extra: dict[str, Any],
        threads: int = 4,
        key_extra: Callable[[Done], dict[str, Any]] = lambda done: {},
    ) -> None:
        self.writer, self.record_extra, self.key_extra = writer, record_extra, key_extra
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="label-encode")
        self._queue: queue.Queue[Future | None] = queue.Queue(maxsize=4 * max(1, threads))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="label-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (future := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.writer.write_prepared(future.result())
                except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                    self._error = e

    def put(self, done: Done) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(self._pool.submit(self._prepare, done))

    def _prepare(self, done: Done) -> Any:
        try:
            done.wait()
        except RuntimeError as e:  # a CUDA error that surfaced at the copy-back's event
            if is_broken_device(e):
                raise device_failure(f"{type(e).__name__}: {e}") from None
            raise
        maps = {name: np.asarray(m) for name, m in done.maps.items()}
        extra = {**self.record_extra, **self.key_extra(done)}
        return self.writer.prepare(done.key, maps, extra, done.error)

    def join(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._pool.shutdown()
        if self._error is not None:
            raise self._error


@dataclass
class ShardJob:
    """Everything needed to label one shard."""

    image_shard: Path
    plan: dict[str, Any]
    plan_sha256: str
    out: Path
    backend: str
    codec: str
    tile: int
    meta: dict[str, Any]
    cameras: dict[str, Intrinsics] = field(default_factory=dict)
    """Source intrinsics of the shard's images that have them (`DatasetInfo.shard_intrinsics`):
    their records carry every view's (`labelgen.views.view_cameras`)."""


@dataclass(frozen=True)
class LabelSettings:
    """How one teacher labels shards: its predictor and the batching, worker and encoding
    settings (the same for every shard of a run)."""

    predict: Predict | FocalPredict
    """uint8 `[B,3,h,w]` -> float32 `[B,1,h,w]` on the host (`batching.host_predictor`); with
    `takes_focal`, also given each view's focal length (`batching.focal_host_predictor`)."""
    full_size: FullSize
    """The size of the teacher's full view of an image (`teacher.full_view_size`)."""
    full_interpolation: str
    """How the full view is resampled (`teacher.interpolation`)."""
    batch_size: int
    """Views per forward pass (halved on out-of-memory)."""
    workers: int
    """DataLoader worker processes decoding images and building views (0: in this process)."""
    encode_threads: int = 4
    """Threads compressing finished labels."""
    record_extra: dict[str, Any] = field(default_factory=dict)
    """Fields added to every key's record, e.g. `{"kind": "disparity"}`."""
    takes_focal: bool = False
    """Whether the teacher is given each view's focal length (`Teacher.takes_focal`); its records
    then say what it used (`labelgen.views.focal_record`)."""

    @classmethod
    def of(
        cls, teacher: Any, device: torch.device, s: RunSettings, workers: int | None = None
    ) -> LabelSettings:
        """A loaded teacher on `device`, run with the batch and encoding settings of `labelgen
        run` and its `--workers` (None: min(4, usable CPUs)); records carry the teacher's output
        kind. A teacher that takes the focal length is given each view's."""
        takes_focal = bool(getattr(teacher, "takes_focal", False))
        predictor = focal_host_predictor if takes_focal else host_predictor
        return cls(
            predictor(teacher, device),
            teacher.full_view_size,
            teacher.interpolation,
            s.batch_size,
            auto_workers(workers),
            s.encode_threads,
            {"kind": teacher.output_kind},
            takes_focal,
        )


def label_shard(
    job: ShardJob,
    settings: LabelSettings,
    on_image: Callable[[int], None] = lambda n_views: None,
) -> tuple[ShardSummary, OrderedBatcher]:
    """Label every key of the shard; returns the published shard's summary and batch stats."""
    dataset = ShardViews(
        job.image_shard, job.plan, job.tile, settings.full_size, settings.full_interpolation
    )
    workers = settings.workers
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        worker_init_fn=exit_with_parent(),
    )
    batcher = OrderedBatcher(
        settings.predict, settings.batch_size, takes_focal=settings.takes_focal
    )
    keys = list(job.plan)
    with open_writer(
        job.out,
        backend=job.backend,
        codec=job.codec,
        keys=keys,
        plan_sha256=job.plan_sha256,
        extra_meta=job.meta,
    ) as writer:

        def key_extra(done: Done) -> dict[str, Any]:
            camera, entry = job.cameras.get(done.key), job.plan[done.key]
            extra = view_cameras(camera, entry, job.tile, settings.full_size)
            if settings.takes_focal:
                scales = view_scales(entry, job.tile, settings.full_size)
                extra.update(focal_record(done.focal, scales))
            return extra

        def focals(key: str) -> dict[str, float | None] | None:
            if not settings.takes_focal:
                return None
            camera = job.cameras.get(key)
            return view_focals(camera, job.plan[key], job.tile, settings.full_size)

        out = OrderedWriter(writer, settings.record_extra, settings.encode_threads, key_extra)
        try:
            for key, views, error in loader:
                for done in batcher.add(key, views, error, focals(key)):
                    out.put(done)
                    on_image(len(done.maps))
            for done in batcher.flush():
                out.put(done)
                on_image(len(done.maps))
        finally:
            out.join()
    return writer.summary, batcher
