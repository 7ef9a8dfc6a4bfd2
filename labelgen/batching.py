"""Batch the views of consecutive images through a teacher and hand back whole images, in order.

Views of equal size (all planned 560x560 views, and full views of equal shape) share batches
across images. An image is complete when all its views are predicted; completed images leave in
the order they came in. A batch that raises is retried view by view so that only the image that
fails is recorded as failed; a batch that runs out of device memory is retried in halves.

A teacher that takes the focal length (`Teacher.takes_focal`) is given each view's, in the same
batch order (`focal_host_predictor`); what it used per view comes back in `Done.focal`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Predict = Callable[[torch.Tensor], torch.Tensor]  # uint8 [B,3,h,w] -> float32 [B,1,h,w] (CPU)
FocalUsed = dict[str, float | bool]  # {"f_px", "estimated"[, "estimate_px"]} of one view
FocalPredict = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, list[FocalUsed]]]
"""uint8 `[B,3,h,w]` and float64 `[B]` focal lengths (NaN: unknown) -> float32 `[B,1,h,w]` on
the host and, per view, the focal length used."""


def host_predictor(teacher: Any, device: torch.device) -> Predict:
    """uint8 `[B,3,h,w]` on the host -> float32 `[B,1,h,w]` on the host.

    On a GPU the result is copied back asynchronously into pinned memory: the returned tensor
    carries a CUDA event (`.ready`) that readers wait for, so the host thread goes on to launch
    the next batch while the copy runs.
    """

    def predict(batch: torch.Tensor) -> torch.Tensor:
        if device.type != "cuda":
            return teacher.predict(batch.float().div_(255.0)).float()
        x = batch.pin_memory().to(device, non_blocking=True).float().div_(255.0)
        return _copy_back(teacher.predict(x).float(), device)

    return predict


def focal_host_predictor(teacher: Any, device: torch.device) -> FocalPredict:
    """`host_predictor` of a teacher that takes the focal length: each view's `f_px` goes to
    `teacher.predict_with_focal` (or `predict_with_estimate`, which also gives the model's own
    estimate: Depth Pro), and what it used comes back per view (`FocalUsed`)."""
    with_estimate = getattr(teacher, "predict_with_estimate", None)

    def predict(batch: torch.Tensor, f_px: torch.Tensor) -> tuple[torch.Tensor, list[FocalUsed]]:
        if device.type == "cuda":
            x = batch.pin_memory().to(device, non_blocking=True).float().div_(255.0)
        else:
            x = batch.float().div_(255.0)
        if with_estimate is not None:
            depth, focal, estimated, own = with_estimate(x, f_px)
        else:
            (depth, focal, estimated), own = teacher.predict_with_focal(x, f_px), None
        used = [
            {"f_px": float(focal[i]), "estimated": bool(estimated[i])} for i in range(len(focal))
        ]
        if own is not None:
            for entry, value in zip(used, own.tolist(), strict=True):
                entry["estimate_px"] = float(value)
        depth = depth.float()
        return (_copy_back(depth, device) if device.type == "cuda" else depth), used

    return predict


def _copy_back(out: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`out` (on the GPU) copied asynchronously into pinned host memory, with its `.ready`."""
    host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(out, non_blocking=True)
    host.ready = torch.cuda.Event()
    host.ready.record(torch.cuda.current_stream(device))  # the stream that runs the copy
    return host


@dataclass
class Done:
    """One image with every view predicted (`maps`), or the error that stopped it."""

    key: str
    maps: dict[str, np.ndarray | torch.Tensor] = field(default_factory=dict)
    error: str | None = None
    ready: list[Any] = field(default_factory=list)  # CUDA events to wait for before reading maps
    focal: dict[str, FocalUsed] = field(default_factory=dict)  # per view, focal teachers only

    def wait(self) -> None:
        """Block until the asynchronous device-to-host copies of this image's maps are done."""
        for event in self.ready:
            event.synchronize()


_Item = tuple[str, str, torch.Tensor, float]  # key, view name, uint8 view, f_px (NaN: unknown)


@dataclass
class _Pending:
    remaining: set[str]
    done: Done


def is_out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


BROKEN_DEVICE = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "an illegal instruction",
    "misaligned address",
    "cudnn_status_internal_error",
    "cublas_status_execution_failed",
)


class DeviceFailure(RuntimeError):
    """The GPU is in an unrecoverable state (a CUDA error that poisons the context): every later
    batch would fail too, so the job stops instead of failing image after image."""


def device_failure(error: str) -> DeviceFailure:
    """The `DeviceFailure` that stops a job, with what to do next."""
    return DeviceFailure(
        f"the device failed and cannot recover ({error}); stopping. Re-run the same command to "
        "resume (finished shards are kept); if it recurs, run with CUDA_LAUNCH_BLOCKING=1 to "
        "locate it"
    )


def is_broken_device(e: BaseException) -> bool:
    if is_out_of_memory(e):
        return False
    text = str(e).lower()
    return any(marker in text for marker in BROKEN_DEVICE)


class OrderedBatcher:
    """Feed images with `add`, collect finished ones from its return values and `flush()`.

    With `takes_focal`, `predict` is a `FocalPredict`: each view's focal length given to `add`
    travels with it into its batch, and what the teacher used lands in `Done.focal`."""

    def __init__(
        self,
        predict: Predict | FocalPredict,
        batch_size: int,
        max_pending: int | None = None,
        takes_focal: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"--batch-size must be ≥ 1, got {batch_size}")
        self.predict = predict
        self.takes_focal = takes_focal
        self.batch_size = batch_size
        self.max_pending = max_pending or 4 * batch_size
        self.oom_retries = 0
        self.views_done = 0
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._queues: dict[tuple[int, int], list[_Item]] = {}

    def add(
        self,
        key: str,
        views: dict[str, torch.Tensor] | None,
        error: str | None = None,
        focals: Mapping[str, float | None] | None = None,
    ) -> list[Done]:
        """Queue one image's views (`{name: uint8 [3,h,w]}`), or record that it failed.
        `focals`: each view's focal length in pixels (None: unknown), for a `takes_focal`
        batcher."""
        if key in self._pending:
            raise ValueError(f"key {key!r} was added twice")
        self._pending[key] = _Pending(set(views or ()), Done(key, error=error))
        for name, view in (views or {}).items():
            queue = self._queues.setdefault(tuple(view.shape[-2:]), [])
            f_px = (focals or {}).get(name)
            queue.append((key, name, view, float("nan") if f_px is None else float(f_px)))
            if len(queue) >= self.batch_size:
                self._run(self._queues.pop(tuple(view.shape[-2:])))
        if len(self._pending) > self.max_pending:
            return self.flush()
        return self._pop_finished()

    def flush(self) -> list[Done]:
        """Run every partial batch and return all images that are now complete."""
        while self._queues:
            self._run(self._queues.pop(next(iter(self._queues))))
        return self._pop_finished()

    def _pop_finished(self) -> list[Done]:
        out = []
        while self._pending:
            first = next(iter(self._pending.values()))
            if first.remaining:
                break
            out.append(self._pending.popitem(last=False)[1].done)
        return out

    def _run(self, items: list[_Item]) -> None:
        # Views of an image that already failed are dropped (the image may have left _pending).
        items = [
            it for it in items if it[0] in self._pending and self._pending[it[0]].done.error is None
        ]
        if not items:
            return
        failure, used = None, None
        try:
            batch = torch.stack([item[2] for item in items])
            if self.takes_focal:
                f_px = torch.tensor([item[3] for item in items], dtype=torch.float64)
                out, used = self.predict(batch, f_px)
            else:
                out = self.predict(batch)
        except Exception as e:  # noqa: BLE001 - one bad image must not stop a shard
            # Keep only the facts: the traceback holds the failed forward's frames, and with
            # them its device tensors, which must be freed before the smaller retries.
            failure = (is_out_of_memory(e), f"{type(e).__name__}: {e}")
            broken = is_broken_device(e)
            e.__traceback__ = None
            del e
            if broken:
                raise device_failure(failure[1]) from None
        if failure is not None:
            self._recover(items, *failure)
            return
        ready = getattr(out, "ready", None)  # set by predictors that copy back asynchronously
        for i, ((key, name, _, _), pred) in enumerate(zip(items, out, strict=True)):
            pending = self._pending[key]
            pending.done.maps[name] = pred[0]  # host tensor; may still be in flight (`ready`)
            if used is not None:
                pending.done.focal[name] = used[i]
            if ready is not None and (
                not pending.done.ready or pending.done.ready[-1] is not ready
            ):
                pending.done.ready.append(ready)
            pending.remaining.discard(name)
            self.views_done += 1

    def _recover(self, items: list[_Item], oom: bool, error: str) -> None:
        if oom and len(items) > 1:
            self.oom_retries += 1
            self.batch_size = max(1, len(items) // 2)  # later batches start at the smaller size
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(items) // 2
            self._run(items[:half])
            self._run(items[half:])
        elif len(items) > 1:
            for item in items:
                self._run([item])
        else:
            key, name = items[0][:2]
            pending = self._pending[key]
            pending.done.error = f"inference failed on view {name}: {error}"
            pending.done.maps.clear()
            pending.done.focal.clear()
            pending.remaining.clear()
