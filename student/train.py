"""`student train`: cross-context, multi-teacher distillation from cached label shards.

One process per device (torchrun; gloo on CPU, NCCL on GPU). The run directory explains itself:
`config.yaml` (resolved settings), `env.json` (versions, git sha, world size), `metrics.jsonl`
(every loss term, learning rate, data and step time, teacher drawn), `model/` (the init's
config and image processor, so exporting needs only the run directory) and `checkpoints/`.
`--resume` continues from the newest checkpoint with the run's own config.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline.model.precision import PRECISIONS
from pipeline.toolkit.config import from_dict, to_dict
from pipeline.toolkit.devices import resolve_device, use_device
from pipeline.toolkit.distributed import worker_info
from student.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_states
from student.config import TrainSettings
from student.data.loader import make_loader
from student.data.stream import DistillStream
from student.losses import (
    FeatureAlignment,
    gradient_matching,
    local_global_gradient,
    local_global_loss,
    normalized_l1,
    total_loss,
)
from student.model import Student, load_student, save_architecture
from student.rundir import RunDir

log = logging.getLogger("student")


class NonFiniteLoss(RuntimeError):
    """Too many consecutive non-finite losses: the message names the step and the keys."""


@dataclass
class Job:
    """What one `student train` invocation trains."""

    dataset: Path
    teachers: list[str]
    init: str
    run_dir: Path
    settings: TrainSettings


def setup_device() -> tuple[torch.device, int, int]:
    """Join the process group when launched with torchrun; returns (device, rank, world)."""
    info = worker_info()
    device = resolve_device("auto")
    if info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    use_device(device)
    return device, info.rank, info.world_size


def lr_factor(step: int, total: int, warmup: int, power: float) -> float:
    """Factor of step `step` (0-based): linear warm-up to 1 at step `warm - 1` (warm = warmup
    capped at a tenth of the run), then polynomial decay towards 0 at step `total`."""
    warm = max(1, min(warmup, total // 10))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, 1 - (step + 1 - warm) / max(1, total + 1 - warm)) ** power


def resolved_norm(norm: str, n_teachers: int) -> str:
    """`auto`: hybrid with several teachers (their scales differ), none with one."""
    if norm != "auto":
        return norm
    return "hybrid" if n_teachers > 1 else "none"


def compute_losses(
    out: dict[str, torch.Tensor],
    batch: dict[str, Any],
    s: TrainSettings,
    n_teachers: int,
    align: FeatureAlignment | None,
) -> dict[str, torch.Tensor]:
    """The named loss terms of one batch and their weighted total `loss`."""
    pred = out["pred"].float()
    target, valid = batch["sc"], batch["valid"]
    terms: dict[str, torch.Tensor] = {}
    if s.loss.shared_context:
        terms["sc"] = normalized_l1(pred, target, valid, resolved_norm(s.loss.norm_sc, n_teachers))
    # Computed even for a batch without tiles (then 0, with a zero gradient): under DDP every rank
    # must give every parameter a gradient, whatever its batch holds.
    if s.loss.local_global:
        size = float(pred.shape[-1])
        tile_args = (
            batch["tiles"],
            batch["tile_boxes"],
            torch.tensor([[0.0, 0.0, size, size]]).expand(pred.shape[0], 4),
            batch["tile_count"],
        )
        terms["lg"] = local_global_loss(
            pred, *tile_args, norm=resolved_norm(s.loss.norm_lg, n_teachers)
        )
    if align is not None and s.loss.lambda_feat > 0:
        terms["feat"] = align(out["tokens"].float(), out["frozen_tokens"].float())
    if s.loss.lambda_grad > 0:  # on the labels the distillation terms use
        grad_norm = resolved_norm(s.loss.norm_grad, n_teachers)
        if s.loss.shared_context:
            terms["grad"] = gradient_matching(pred, target, valid, norm=grad_norm)
        elif s.loss.local_global:
            terms["grad"] = local_global_gradient(pred, *tile_args, norm=grad_norm)
    return total_loss(
        terms, {"lg": s.loss.lambda_lg, "feat": s.loss.lambda_feat, "grad": s.loss.lambda_grad}
    )


def _tensorboard(run_dir: Path, step: int):
    """A writer into `RUN_DIR/tensorboard`. Resuming from a checkpoint at `step` hides the events
    an interrupted run wrote after it: the resumed run writes those steps again."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ValueError(
            "tensorboard=true needs the tensorboard package: pip install tensorboard "
            '(or pip install "distill-any-depth-pipeline[tensorboard]")'
        ) from e
    return SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=step + 1 if step else None)


def board_scalars(record: dict[str, Any]) -> dict[str, float]:
    """TensorBoard tags and values of one `metrics.jsonl` record of a step."""
    scalars = {}
    for name, value in record.items():
        if name in ("step", "teacher"):
            continue
        if name == "lr":
            scalars.update({f"lr/{group}": lr for group, lr in value.items()})
        elif name in ("data_time", "step_time"):
            scalars[f"time/{name.removesuffix('_time')}"] = value
        elif name == "grad_norm":
            scalars["grad_norm"] = value
        else:
            scalars[f"loss/{name}"] = value
    return scalars


HOST_ONLY = frozenset({"image"})
"""Batch members training never reads on the device (the student sees `image_aug`)."""


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


class Trainer:
    """Owns the model, optimizer, schedule and data stream of one rank."""

    def __init__(self, job: Job, device: torch.device, rank: int, world: int) -> None:
        s = job.settings
        self.job, self.s, self.device, self.rank, self.world = job, s, device, rank, world
        torch.manual_seed(s.seed)  # identical model init on every rank
        self.student: Student = load_student(job.init, frozen_encoder=s.loss.lambda_feat > 0).to(
            device
        )
        self.align = FeatureAlignment(
            self.student.hidden_size, self.student.hidden_size, margin=s.loss.feat_margin
        ).to(device)
        params = self.student.param_groups(s.optim.lr, s.optim.encoder_lr_ratio)
        self.optimizer = torch.optim.AdamW(params, weight_decay=s.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(step, s.steps, s.optim.warmup_steps, s.optim.poly_power),
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
            batch_size=s.batch_size,
            mode=s.data.mode,
            teacher_weights=s.data.teacher_weights or None,
            per_sample_teacher=s.data.per_sample_teacher,
            seed=s.seed,
            shuffle_buffer=s.data.shuffle_buffer,
            size=s.data.size,
            augment=s.data.augment,
            rank=rank,
            world=world,
            accumulate=s.optim.accumulate,
        )
        self.loader = make_loader(self.stream, workers=s.data.workers)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=device.type == "cuda" and s.precision == "fp16"
        )
        self.step = 0
        self.bad_in_a_row = 0
        self.board = None

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.student.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data": self.stream.state_dict(),
            "epoch": self.stream.state_dict()["epoch"],
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.student.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.stream.load_state_dict(ckpt["data"])
        set_rng_states(ckpt["rng"])
        self.step = int(ckpt["step"])

    # -- one optimizer step ----------------------------------------------------------------------
    def micro_step(
        self, batch: dict[str, Any], scale: float, sync: bool = True
    ) -> dict[str, torch.Tensor] | None:
        """Forward and backward of one micro-batch. `sync=False` (all but the last micro-batch of
        an accumulated step) leaves the gradients unreduced under DDP: the last backward
        all-reduces the accumulated sum once."""
        batch = _to(batch, self.device)
        quiet = self.model.no_sync() if not sync and self.world > 1 else contextlib.nullcontext()
        with quiet:
            with _autocast(self.device, self.s.precision):
                out = self.model(batch["image_aug"])
            terms = compute_losses(out, batch, self.s, len(self.job.teachers), self.align)
            if not self.all_finite(terms["loss"]):
                return None  # skipped on every rank alike, so DDP's collectives stay matched
            self.scaler.scale(terms["loss"] * scale).backward()
        return {k: v.detach() for k, v in terms.items()}

    def teachers_of(self, batch: dict[str, Any]) -> str | list[str]:
        """What `metrics.jsonl` records of a micro-batch's teacher: its name, or with
        `per_sample_teacher` the name of each sample's."""
        if self.s.data.per_sample_teacher:
            return list(batch["teacher"])
        return batch["teacher"][0]

    def all_finite(self, loss: torch.Tensor) -> bool:
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        if self.world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return bool(bad.item() == 0)

    def optimizer_step(self) -> float | None:
        """Clip, step and schedule; the gradient norm, or None when the step was not taken.

        A non-finite gradient norm (possible with a finite loss) skips the update, as does an
        fp16 overflow, which the GradScaler answers by lowering its scale. Under DDP the gradients,
        hence the decision, are the same on every rank.
        """
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(
            self.student.parameters(), self.s.optim.grad_clip or float("inf")
        )
        if not self.scaler.is_enabled() and not bool(torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale:
            return None
        self.scheduler.step()
        return float(norm)

    # -- the loop --------------------------------------------------------------------------------
    def batches(self):
        """Micro-batches forever, epoch after epoch, from the stream's resume position."""
        epoch = self.stream.state_dict()["epoch"]
        while True:
            self.stream.set_epoch(epoch)
            yield from self.loader
            epoch += 1

    def fit(self, run: RunDir) -> None:
        s = self.s
        data = self.batches()
        bar = tqdm(
            total=s.steps,
            initial=self.step,
            desc="train",
            disable=self.rank != 0,
            dynamic_ncols=True,
        )
        if s.tensorboard and self.rank == 0:
            self.board = _tensorboard(self.job.run_dir, self.step)
        try:
            self.loop(run, data, bar)
        finally:
            bar.close()
            if self.board is not None:
                self.board.close()

    def loop(self, run: RunDir, data, bar) -> None:
        s, acc = self.s, self.s.optim.accumulate
        while self.step < s.steps:
            started = time.perf_counter()
            self.model.train()
            records, keys, waited = [], [], 0.0
            for micro in range(acc):
                t0 = time.perf_counter()
                batch = next(data)
                waited += time.perf_counter() - t0
                keys += batch["key"]
                terms = self.micro_step(batch, 1.0 / acc, sync=micro == acc - 1)
                if terms is not None:
                    records.append((terms, self.teachers_of(batch)))
            if len(records) < acc:
                self.optimizer.zero_grad(set_to_none=True)
                self.skip_bad_step(keys, run, "non-finite loss")
                continue
            lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}  # this step's
            grad_norm = self.optimizer_step()
            if grad_norm is None:
                self.skip_bad_step(keys, run, "non-finite gradient")
                continue
            self.bad_in_a_row = 0
            self.step += 1
            self.after_step(records, lrs, grad_norm, waited, time.perf_counter() - started, run)
            bar.update()

    def skip_bad_step(self, keys: list[str], run: RunDir, why: str) -> None:
        """Record a step that was not taken. Its record carries the step it would have been
        (`step + 1`), so a resume from `step` drops it with the steps it redoes."""
        self.bad_in_a_row += 1
        attempted = self.step + 1
        log.warning("step %d: %s, step skipped (keys %s)", attempted, why, keys)
        if self.rank == 0:
            run.log_metrics({"step": attempted, "skipped": why, "keys": keys})
        if self.bad_in_a_row >= self.s.max_bad_steps:
            raise NonFiniteLoss(
                f"{self.bad_in_a_row} non-finite losses or gradients in a row at step {attempted} "
                f"(last batch keys: {keys}); check those labels with `pipeline verify` and the "
                "learning rate, or resume from an earlier checkpoint"
            )

    def after_step(
        self, records, lrs: dict[str, float], grad_norm: float, data_s: float, step_s: float, run
    ) -> None:
        s = self.s
        if self.rank == 0 and (self.step % s.log_every == 0 or self.step == s.steps):
            terms = {k: sum(float(r[0][k]) for r in records) / len(records) for k in records[0][0]}
            record = {
                "step": self.step,
                **terms,
                "lr": lrs,
                "grad_norm": grad_norm,
                "data_time": data_s,
                "step_time": step_s,
                "teacher": [r[1] for r in records],
            }
            run.log_metrics(record)
            if self.board is not None:
                for tag, value in board_scalars(record).items():
                    self.board.add_scalar(tag, value, self.step)
        if self.step % s.checkpoint_every == 0 or self.step == s.steps:
            if self.rank == 0:
                save_checkpoint(run.root, self.step, self.state())
                if self.board is not None:
                    self.board.flush()
            if self.world > 1:
                dist.barrier()


def run_training(job: Job, resume: bool = False) -> Path:
    """Train (or resume) the run in `job.run_dir`; returns the run directory."""
    device, rank, world = setup_device()
    run = RunDir(Path(job.run_dir))
    job.settings.validate()
    if not resume:
        _refuse_existing(run, world)
    trainer = Trainer(job, device, rank, world)  # loads the init, checks dataset and columns
    if not resume:
        _start_run(run, job, world)  # only once every input has been checked
    ckpt_path = latest_checkpoint(run.root) if resume else None
    if ckpt_path is not None:
        trainer.restore(load_checkpoint(ckpt_path))
        log.info("resumed from %s (step %d)", ckpt_path, trainer.step)
    if rank == 0:
        if resume:
            run.truncate_metrics(trainer.step)
        run.write_env(world, resumed_at=trainer.step if resume else None)
    trainer.fit(run)
    if world > 1:
        dist.barrier()
    return run.root


def _refuse_existing(run: RunDir, world: int) -> None:
    """Refuse an existing run (every rank checks before rank 0 writes anything)."""
    exists = run.config.exists()
    if world > 1:
        dist.barrier()
    if exists:
        raise FileExistsError(
            f"{run.root} already holds a run; pass --resume to continue it or choose a new --out"
        )


def _start_run(run: RunDir, job: Job, world: int) -> None:
    """Write the run's config and the init's architecture (rank 0)."""
    if worker_info().is_main:
        run.root.mkdir(parents=True, exist_ok=True)
        run.write_config(
            {
                "dataset": str(job.dataset),
                "teachers": job.teachers,
                "init": str(job.init),
                "settings": to_dict(job.settings),
            }
        )
        save_architecture(job.init, run.architecture)
    if world > 1:
        dist.barrier()


def prepare_job(
    run_dir: Path,
    dataset: Path | None,
    teachers: list[str],
    init: str | None,
    settings: TrainSettings | None,
    resume: bool,
) -> Job:
    """The job of a new run from the flags, or, with `resume`, from the run's own config."""
    run = RunDir(Path(run_dir))
    if resume:
        saved = run.read_config()
        return Job(
            Path(saved["dataset"]),
            list(saved["teachers"]),
            saved["init"],
            run.root,
            from_dict(TrainSettings, saved["settings"]),
        )
    if dataset is None or not teachers or init is None or settings is None:
        raise ValueError("a new run needs --dataset, at least one --teacher and --init")
    # Recorded absolute, so `--resume`, `student export` and `predict` work from any directory;
    # an init that is not a local path is a hub id and is kept as given.
    init = str(Path(init).resolve()) if Path(init).exists() else str(init)
    return Job(Path(dataset).resolve(), teachers, init, run.root, settings)
