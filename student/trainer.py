"""The step loop of `student train` on one rank: micro-batches from the stream, forward under
autocast, the objective, backward (no DDP sync until the last micro-batch of a step), one
optimizer step, the step's record and, every `checkpoint_every` steps, a checkpoint (the ones
`checkpoint.keep_last` / `keep_every` do not keep are then deleted). Each step
rank 0 records also measures its prediction's scale (`student.diagnostics`), and warns once when
it drifts or collapses.

A step whose loss or gradient is not finite, or one with a micro-batch without any valid label
pixel (labels all NaN, Inf or masked: its loss would be 0 with no gradient), is skipped on every
rank alike (so DDP's collectives stay matched) and recorded; `max_bad_steps` skipped steps in a
row stop the run, naming the keys of the last one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pipeline.model.precision import PRECISIONS
from pipeline.toolkit.progress import Progress, progress_bar
from student.checkpoint import prune_checkpoints, save_checkpoint, set_rng_states
from student.console import RunningTerms
from student.data.loader import make_loader
from student.data.stream import DistillStream
from student.diagnostics import SCALE_FIELDS, ScaleWatch, prediction_scale
from student.ema import WeightAverage
from student.metric_terms import MetricLabels, check_cameras
from student.metrics import MetricsLog, step_record
from student.model import Student, load_student
from student.objective import Objective, collapse_warning, uncanonical_warning
from student.optim import Optimization
from student.rundir import Job, RunDir

log = logging.getLogger("student")

HOST_ONLY = frozenset({"image"})
"""Batch members training never reads on the device (the student sees `image_aug`)."""


NON_FINITE_LOSS = "non-finite loss"
NON_FINITE_GRADIENT = "non-finite gradient"
NO_LABELS = "no valid label pixel"
"""Why a step is skipped (the `skipped` field of its metrics record)."""


class NonFiniteLoss(RuntimeError):
    """Too many consecutive bad steps (non-finite loss or gradient, or no valid label pixel): the
    message names the step and the keys."""


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True)
        if isinstance(v, torch.Tensor) and k not in HOST_ONLY
        else v
        for k, v in batch.items()
    }


def _autocast(device: torch.device, precision: str):
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=PRECISIONS[precision])


def prepared_student(job: Job, device: torch.device) -> Student:
    """The run's student on `device`: its init loaded (all weights or the encoder), computing at
    its family's side for the run's views (`input_side`), unused parameters frozen for DDP."""
    s = job.settings
    student = load_student(
        job.init, frozen_encoder=s.loss.lambda_feat > 0, weights=s.init_weights, output=s.student
    )
    family = student.family
    if family.fp16_unstable and s.precision == "fp16" and device.type == "cuda":
        raise ValueError(f"a {family.title} student overflows in fp16: set precision=bf16")
    student.side = family.side(student.model.config, s.data.size, s.input_side)
    student.freeze_unused()
    return student.to(device)


class Trainer:
    """Owns the model, objective, optimization and data stream of one rank."""

    def __init__(
        self, job: Job, device: torch.device, rank: int, world: int, progress: bool = True
    ) -> None:
        s = job.settings
        self.job, self.s, self.device, self.rank, self.world = job, s, device, rank, world
        self.progress = progress and rank == 0  # the bar (or lines) with the running loss
        torch.manual_seed(s.seed)  # identical model init on every rank
        self.student: Student = prepared_student(job, device)
        fp16 = device.type == "cuda" and s.precision == "fp16"
        self.optimization = Optimization.for_student(
            self.student, s.optim, job.schedule_steps, fp16, job.continued
        )
        self.ema = (  # rank 0 saves the checkpoints, and the weights are the same on every rank
            WeightAverage(self.student.model, s.optim.ema) if s.optim.ema and rank == 0 else None
        )
        self.model = (
            DistributedDataParallel(
                self.student, device_ids=[device] if device.type == "cuda" else None
            )
            if world > 1
            else self.student
        )
        self.stream = DistillStream(
            job.dataset,
            job.teachers,
            s.data,
            batch_size=s.batch_size,
            seed=s.seed,
            rank=rank,
            world=world,
            accumulate=s.optim.accumulate,
            metric=s.student.metric,
        )
        metric = self.metric_labels()
        self.objective = Objective(s.loss, len(job.teachers), self.student.hidden_size, metric)
        if metric is not None:
            self.say_metric(metric)
        self.loader = make_loader(self.stream, workers=s.data.workers)
        for warning in (
            collapse_warning(s.loss, self.stream.invariances),
            uncanonical_warning(self.objective.loss, self.stream.invariances, s.student.metric),
        ):
            if warning is not None and rank == 0:
                log.warning("%s", warning)
        self.step = 0
        self.bad_in_a_row = 0
        self.metrics: MetricsLog | None = None  # rank 0 during `fit`
        self.watch = ScaleWatch()  # of the steps rank 0 records, from this session's first
        self.running = RunningTerms(s.log_every)  # what the progress shows

    def metric_labels(self) -> MetricLabels | None:
        """A metric student's labels (`student.metric_terms`; the objective checks them); None
        for a relative student."""
        s = self.s
        if not s.student.metric:
            return None
        metric = [self.stream.invariances[t] == "metric" for t in self.job.teachers]
        return MetricLabels(s.student, metric, (self.student.side or s.data.size) / s.data.size)

    def say_metric(self, labels: MetricLabels) -> None:
        """Refuse images of unknown camera when learning canonical depth; say in the log which
        terms each teacher feeds."""
        if self.s.student.canonical_focal is not None and any(labels.metric_teachers):
            check_cameras(self.stream.info)
        if self.rank == 0:
            log.info("%s", labels.terms_fed(self.job.teachers, self.objective.loss))

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.student.model.state_dict(),
            **self.optimization.state_dict(),
            "data": self.stream.state_dict(),
            "epoch": self.stream.state_dict()["epoch"],
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.student.model.load_state_dict(ckpt["model"])
        if self.ema is not None and "ema" in ckpt:
            self.ema.load_state_dict(ckpt["ema"])
        self.optimization.load_state_dict(ckpt)
        self.stream.load_state_dict(ckpt["data"])
        set_rng_states(ckpt["rng"])
        self.step = int(ckpt["step"])

    # -- one optimizer step ----------------------------------------------------------------------
    def micro_step(
        self, batch: dict[str, Any], scale: float, sync: bool = True, measure: bool = False
    ) -> dict[str, torch.Tensor] | str:
        """Forward and backward of one micro-batch: its loss terms and, with `measure`, its
        prediction's scale (`SCALE_FIELDS`, measured without gradient), or why it is bad (then
        no backward). `sync=False` (all but the last micro-batch of an accumulated step) leaves
        the gradients unreduced under DDP: the last backward all-reduces the accumulated sum
        once."""
        batch = _to(batch, self.device)
        quiet = self.model.no_sync() if not sync and self.world > 1 else contextlib.nullcontext()
        with quiet:
            with _autocast(self.device, self.s.precision):
                out = self.model(batch["image_aug"])
            terms = self.objective(out, batch)
            why = self.bad_batch(terms["loss"], self.objective.label_pixels(batch))
            if why is not None:
                return why  # skipped on every rank alike, so DDP's collectives stay matched
            self.optimization.backward(terms["loss"] * scale)
        detached = {k: v.detach() for k, v in terms.items()}
        if measure:
            detached |= prediction_scale(out["pred"], batch["valid"])
        return detached

    def teachers_of(self, batch: dict[str, Any]) -> str | list[str]:
        """What `metrics.jsonl` records of a micro-batch's teacher: its name, or with
        `per_sample_teacher` the name of each sample's."""
        if self.s.data.per_sample_teacher:
            return list(batch["teacher"])
        return batch["teacher"][0]

    def bad_batch(self, loss: torch.Tensor, label_pixels: torch.Tensor) -> str | None:
        """Why a micro-batch must not be stepped on (its loss is not finite, or it holds no valid
        label pixel), on any rank; None when it is fine."""
        bad = torch.stack([~torch.isfinite(loss.detach()), label_pixels == 0]).float()
        if self.world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        non_finite, no_labels = bad.tolist()
        return NON_FINITE_LOSS if non_finite else NO_LABELS if no_labels else None

    # -- the loop --------------------------------------------------------------------------------
    def batches(self) -> Iterator[dict[str, Any]]:
        """Micro-batches forever, epoch after epoch, from the stream's resume position."""
        epoch = self.stream.state_dict()["epoch"]
        while True:
            self.stream.set_epoch(epoch)
            yield from self.loader
            epoch += 1

    def fit(self, run: RunDir) -> None:
        """Train from `self.step` to `steps`, recording into and checkpointing to `run`."""
        s = self.s
        data = self.batches()
        bar = progress_bar(
            s.steps, "train", "steps", initial=self.step, enabled=self.progress, every=s.log_every
        )
        if self.rank == 0:
            self.metrics = MetricsLog(run, self.step, tensorboard=s.tensorboard)
        try:
            self.loop(run, data, bar)
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()

    def loop(self, run: RunDir, data: Iterator[dict[str, Any]], bar: Progress) -> None:
        s, acc = self.s, self.s.optim.accumulate
        while self.step < s.steps:
            started = time.perf_counter()
            self.model.train()
            micro, keys, bad, waited = [], [], [], 0.0
            logged = self.logs(self.step + 1)  # only a recorded step measures its scale
            for i in range(acc):
                t0 = time.perf_counter()
                batch = next(data)
                waited += time.perf_counter() - t0
                keys += batch["key"]
                terms = self.micro_step(batch, 1.0 / acc, sync=i == acc - 1, measure=logged)
                if isinstance(terms, str):
                    bad.append(terms)
                else:
                    micro.append((terms, self.teachers_of(batch)))
            if bad:
                self.optimization.zero_grad()
                self.skip_bad_step(keys, NON_FINITE_LOSS if NON_FINITE_LOSS in bad else NO_LABELS)
                continue
            lrs = self.optimization.learning_rates()  # this step's
            grad_norm = self.optimization.step()
            if grad_norm is None:
                self.skip_bad_step(keys, NON_FINITE_GRADIENT)
                continue
            if self.ema is not None:
                self.ema.update(self.student.model)
            self.bad_in_a_row = 0
            self.step += 1
            if self.logs(self.step):
                elapsed = time.perf_counter() - started
                self.record(step_record(self.step, micro, lrs, grad_norm, waited, elapsed))
            if self.step % s.checkpoint_every == 0 or self.step == s.steps:
                self.checkpoint(run)
            self.show(bar, micro)

    def logs(self, step: int) -> bool:
        """Whether `step` is recorded in `metrics.jsonl` (rank 0: every `log_every`, the last)."""
        return self.metrics is not None and (step % self.s.log_every == 0 or step == self.s.steps)

    def record(self, record: dict[str, Any]) -> None:
        """Record a step taken (rank 0), and warn of what its prediction's scale shows."""
        self.metrics.step(record)
        for warning in self.watch.check(record):
            log.warning("%s", warning)

    def show(self, bar: Progress, micro: list[tuple[dict[str, torch.Tensor], Any]]) -> None:
        """Count the step taken on the bar (or lines), with the running loss and its terms."""
        if self.progress:
            losses = [({k: v for k, v in t.items() if k not in SCALE_FIELDS}, x) for t, x in micro]
            self.running.add(losses)
            bar.set_status(self.running.status())
        bar.update()

    def skip_bad_step(self, keys: list[str], why: str) -> None:
        """Record a step that was not taken. Its record carries the step it would have been
        (`step + 1`), so a resume from `step` drops it with the steps it redoes."""
        self.bad_in_a_row += 1
        attempted = self.step + 1
        log.warning("step %d: %s, step skipped (keys %s)", attempted, why, keys)
        if self.metrics is not None:
            self.metrics.append({"step": attempted, "skipped": why, "keys": keys})
        if self.bad_in_a_row < self.s.max_bad_steps:
            return
        if why == NO_LABELS:
            raise NonFiniteLoss(
                f"{self.bad_in_a_row} bad steps in a row at step {attempted}, the last with no "
                f"valid label pixel (last batch keys: {keys}): their labels are all NaN, Inf or "
                "masked. Check the teacher columns with `pipeline verify` and relabel the broken "
                "one (`pipeline status` lists its unusable maps)"
            )
        raise NonFiniteLoss(
            f"{self.bad_in_a_row} non-finite losses or gradients in a row at step {attempted} "
            f"(last batch keys: {keys}); check those labels with `pipeline verify` and the "
            "learning rate, or resume from an earlier checkpoint"
        )

    def checkpoint(self, run: RunDir) -> None:
        """Save this step's checkpoint, then delete those `checkpoint.keep_last` / `keep_every`
        do not keep (rank 0; every rank waits for it)."""
        if self.rank == 0:
            save_checkpoint(run.root, self.step, self.state())
            prune_checkpoints(run.root, self.s.checkpoint)
            if self.metrics is not None:
                self.metrics.flush()
        if self.world > 1:
            dist.barrier()
