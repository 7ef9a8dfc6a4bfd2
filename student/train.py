"""`student train`: cross-context, multi-teacher distillation from cached label shards.

One process per device (torchrun; gloo on CPU, NCCL on GPU). The run directory explains itself:
`config.yaml` (the settings, with `auto` normalizations resolved), `env.json` (versions, git sha,
world size), `metrics.jsonl` (every loss term, learning rate, data and step time, teacher drawn),
`model/` (the init's config and image processor, so exporting needs only the run directory) and
`checkpoints/`. `--resume` continues from the newest checkpoint with the run's own config (a
finished run says so and does nothing).

One process owns the run directory for the whole run (`holding`: rank 0 holds its lock), and
`inputs.json` records what it trains on (`student.inputs`): `--resume` refuses a changed input and
follows a moved dataset (`--resume --dataset NEW`). A continuation is recorded before anything
else, and what a killed checkpoint write left is removed before training starts.

Reproducibility: a run pins its intra-op thread count (`threads`, recorded in config.yaml) and,
on CPU (on GPU with `deterministic=true`), uses deterministic kernels only, so that two runs of
the same settings give the same metrics whatever else the machine is doing (`reproducible`).

This module is the run's life cycle (`prepare_job`, `run_training`); the step loop is
`student.trainer`, the losses `student.objective`, the optimizer and schedule `student.optim`,
the records `student.metrics`, the directory `student.rundir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline.toolkit.cpus import rank_threads
from pipeline.toolkit.devices import resolve_device, use_device
from pipeline.toolkit.distributed import worker_info
from pipeline.toolkit.launch import Launch
from student.checkpoint import checkpoint_step, clear_leftovers, latest_checkpoint, load_checkpoint
from student.config import TrainSettings
from student.inputs import check_resume, run_inputs, write_inputs
from student.metrics import truncate_metrics
from student.model import save_architecture
from student.rundir import Job, RunDir
from student.trainer import Trainer

log = logging.getLogger("student")


def setup_device(name: str = "auto") -> tuple[torch.device, int, int]:
    """Join the process group when launched with torchrun; returns (device, rank, world)."""
    info = worker_info()
    device = resolve_device(name)
    if info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    use_device(device)
    return device, info.rank, info.world_size


def run_training(job: Job, resume: bool = False, launch: Launch | None = None) -> Path:
    """Train (or resume) the run in `job.run_dir`, owning it (`holding`); returns the run
    directory."""
    launch = launch or Launch()
    device, rank, world = setup_device(launch.device)
    run = RunDir(Path(job.run_dir))
    job.settings.validate()
    with holding(run, rank, world, device):
        if resume and rank == 0:
            _record_continuation(run, job)  # first: a kill from here on still continues
        job = with_threads(job.resolved())  # once, when the run starts; config.yaml records them
        if resume:
            inputs, record = check_resume(run, job)  # every rank: the same files, one verdict
        else:
            _refuse_existing(run, world)
        if rank == 0:
            clear_leftovers(run.root)
        with reproducible(job.settings, device):
            trainer = Trainer(job, device, rank, world, progress=launch.progress)  # checks inputs
            if not resume:
                _start_run(run, job, world)  # only once every input has been checked
            elif record and rank == 0:
                _record_inputs(run, job, inputs)
            _train(run, job, trainer, resume)
    if world > 1:
        dist.barrier()
    return run.root


def _train(run: RunDir, job: Job, trainer: Trainer, resume: bool) -> None:
    """Restore the newest checkpoint (with `resume`) and train to the job's total."""
    ckpt_path = latest_checkpoint(run.root) if resume else None
    if ckpt_path is not None:
        trainer.restore(load_checkpoint(ckpt_path))
        log.info("resumed from %s (step %d)", ckpt_path, trainer.step)
    if trainer.rank == 0:
        if resume:
            truncate_metrics(run, trainer.step)
        run.write_env(trainer.world, trainer.step if resume else None, trainer.device.type)
    trainer.fit(run)


@contextlib.contextmanager
def holding(run: RunDir, rank: int, world: int, device: torch.device) -> Iterator[None]:
    """Own the run directory for the whole run: rank 0 holds its lock (`RunDir.lock`); when it
    is refused, every rank stops. A directory the lock created and nothing else filled (a new run
    refused for a bad input) is removed with it."""
    lock, refused, existed = None, None, run.root.exists()
    if rank == 0:
        try:
            lock = run.lock()
        except FileExistsError as e:
            refused = e
    if world > 1:
        flag = torch.tensor([float(refused is not None)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and refused is None:
            refused = FileExistsError(
                f"{run.root}: in use by another student train process (rank 0 names it)"
            )
    if refused is not None:
        raise refused
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
            if not existed:
                with contextlib.suppress(OSError):
                    run.root.rmdir()  # only when empty


def _record_inputs(run: RunDir, job: Job, inputs: dict) -> None:
    """Record the inputs of a resumed run: its moved dataset's place (config.yaml too), or the
    first record of a run started before inputs were recorded."""
    if str(job.dataset) != str(run.read_config()["dataset"]):
        run.move_dataset(job.dataset)
        log.info("%s: the dataset is now %s (same images, plan and labels)", run.root, job.dataset)
    write_inputs(run, inputs)


def _record_continuation(run: RunDir, job: Job) -> None:
    """Record this session's new total in `continued.yaml` unless it is recorded already."""
    recorded = [(int(e["at_step"]), int(e["steps"])) for e in run.read_continuations()]
    if job.continued and tuple(recorded) != job.continued:
        at, steps = job.continued[-1]
        previous = job.continued[-2][1] if len(job.continued) > 1 else job.schedule_steps
        run.record_continuation(at, steps, previous)
        log.info("continued from step %d to %d steps (was %d)", at, steps, previous)


def with_threads(job: Job) -> Job:
    """The job with its `threads` made concrete (`pipeline.toolkit.cpus.rank_threads` when
    unset): what the run pins, and its config.yaml records."""
    threads = job.settings.threads or rank_threads()
    return dataclasses.replace(job, settings=dataclasses.replace(job.settings, threads=threads))


@contextlib.contextmanager
def reproducible(s: TrainSettings, device: torch.device) -> Iterator[None]:
    """Pin `s.threads` intra-op threads and, on CPU or with `s.deterministic`, use deterministic
    kernels only (e.g. the CPU's parallel accumulating `index_put_` adds in the order its threads
    happen to run); the process's previous choices are restored afterwards."""
    cudnn = torch.backends.cudnn
    before = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
    )
    torch.set_num_threads(int(s.threads or rank_threads()))
    if device.type != "cuda" or s.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)  # warns where none exists
    if device.type == "cuda" and s.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first matmul
        cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])
        cudnn.deterministic, cudnn.benchmark = before[3], before[4]


def finished_message(job: Job) -> str | None:
    """What `--resume` says of a run whose newest checkpoint is its last step, else None."""
    step, steps = checkpoint_step(job.run_dir), job.settings.steps
    if step < steps:
        return None
    return (
        f"{job.run_dir} is already finished: it has {step} of {steps} steps, nothing to resume; "
        f"next: student export {job.run_dir} --out HF_DIR"
    )


def continue_job(job: Job, steps: int | None) -> Job:
    """`job` continued to `steps` in all from its newest checkpoint: from that step on the
    learning-rate schedule is the one of the new total (`student.optim.lr_factor`); the same or
    no `steps` is a plain resume. A total not above the checkpoint's step is refused."""
    if steps is None or steps == job.settings.steps:
        return job
    at = checkpoint_step(job.run_dir)
    if steps <= at:
        raise ValueError(
            f"--steps {steps}: the newest checkpoint of {job.run_dir} is at step {at}; "
            f"continue it to more steps than that (it was to run {job.settings.steps})"
        )
    return job.continued_to(at, steps)


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
    """Write the run's config, its inputs' identity and the init's architecture (rank 0)."""
    if worker_info().is_main:
        run.root.mkdir(parents=True, exist_ok=True)
        write_inputs(run, run_inputs(job.dataset, job.teachers))
        run.write_job(job)
        save_architecture(job.init, run.architecture, job.settings.student)
    if world > 1:
        dist.barrier()


def prepare_job(
    run_dir: Path,
    dataset: Path | None,
    teachers: list[str],
    init: str | None,
    settings: TrainSettings | None,
    resume: bool,
    steps: int | None = None,
) -> Job:
    """The job of a new run from the flags, or, with `resume`, from the run's own config;
    `steps` (with `resume`): continue the run to that many steps in all (`continue_job`);
    `dataset` (with `resume`): the run's dataset moved there (`student.inputs.check_resume`)."""
    run = RunDir(Path(run_dir))
    if resume:
        job = continue_job(run.read_job(), steps)
        return dataclasses.replace(job, dataset=Path(dataset).resolve()) if dataset else job
    if dataset is None or not teachers or init is None or settings is None:
        raise ValueError("a new run needs --dataset, at least one --teacher and --init")
    # Recorded absolute, so `--resume`, `student export` and `predict` work from any directory;
    # an init that is not a local path is a hub id and is kept as given.
    init = str(Path(init).resolve()) if Path(init).exists() else str(init)
    return Job(Path(dataset).resolve(), teachers, init, run.root, settings)
