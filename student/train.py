"""`student train`: cross-context, multi-teacher distillation from cached label shards.

One process per device (torchrun; gloo on CPU, NCCL on GPU). The run directory explains itself:
`config.yaml` (the settings, with `auto` normalizations resolved), `env.json` (versions, git sha,
world size), `metrics.jsonl` (every loss term, learning rate, data and step time, teacher drawn),
`model/` (the init's config and image processor, so exporting needs only the run directory) and
`checkpoints/`. `--resume` continues from the newest checkpoint with the run's own config.

This module is the run's life cycle (`prepare_job`, `run_training`); the step loop is
`student.trainer`, the losses `student.objective`, the optimizer and schedule `student.optim`,
the records `student.metrics`, the directory `student.rundir`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline.toolkit.devices import resolve_device, use_device
from pipeline.toolkit.distributed import worker_info
from student.checkpoint import latest_checkpoint, load_checkpoint
from student.config import TrainSettings
from student.metrics import truncate_metrics
from student.model import save_architecture
from student.rundir import Job, RunDir
from student.trainer import Trainer

log = logging.getLogger("student")


def setup_device() -> tuple[torch.device, int, int]:
    """Join the process group when launched with torchrun; returns (device, rank, world)."""
    info = worker_info()
    device = resolve_device("auto")
    if info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    use_device(device)
    return device, info.rank, info.world_size


def run_training(job: Job, resume: bool = False) -> Path:
    """Train (or resume) the run in `job.run_dir`; returns the run directory."""
    device, rank, world = setup_device()
    run = RunDir(Path(job.run_dir))
    job.settings.validate()
    job = job.resolved()  # once, when the run starts; config.yaml records the result
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
            truncate_metrics(run, trainer.step)
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
        run.write_job(job)
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
        return run.read_job()
    if dataset is None or not teachers or init is None or settings is None:
        raise ValueError("a new run needs --dataset, at least one --teacher and --init")
    # Recorded absolute, so `--resume`, `student export` and `predict` work from any directory;
    # an init that is not a local path is a hub id and is kept as given.
    init = str(Path(init).resolve()) if Path(init).exists() else str(init)
    return Job(Path(dataset).resolve(), teachers, init, run.root, settings)
