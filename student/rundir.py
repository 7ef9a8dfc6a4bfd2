"""A training run directory and the job it records: `config.yaml` (dataset, teachers, init and
resolved settings), `continued.yaml` (each `--resume --steps N`: from which step to which
total), `inputs.json` (the identity of every input, `student.inputs`), `env.json`,
`metrics.jsonl`, `model/`, `checkpoints/` and, while a process trains it, `train.lock`.

`metrics.jsonl` is written by `student.metrics`, the checkpoints by `student.checkpoint`; their
names (`checkpoints/step_NNNNNNN.pt` and its checksum `step_NNNNNNN.pt.sha256`) are `RunDir`'s,
the one place that spells the layout.

One process owns a run directory at a time: `RunDir.lock` holds `train.lock` (the shared
`pipeline.toolkit.claims` lock: owner host, pid and PID namespace, refreshed while held); a
second `student train` on it is refused naming the holder, and the lock of a process of this host
that is gone (killed) is taken over at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from pipeline.toolkit.atomic import is_temporary, write_bytes
from pipeline.toolkit.claims import Claim, LockInfo, claim_or_wait, worker_id
from pipeline.toolkit.config import from_dict, to_dict
from pipeline.toolkit.environment import environment as pipeline_environment
from student.config import TrainSettings


@dataclass
class Job:
    """What one `student train` invocation trains."""

    dataset: Path
    teachers: list[str]
    init: str
    run_dir: Path
    settings: TrainSettings
    """`settings.steps` is the run's current total (the last continuation's, if any)."""
    continued: tuple[tuple[int, int], ...] = ()
    """`(at_step, steps)` of each `--resume --steps N` that changed the total, in order."""
    first_steps: int | None = None
    """The total `config.yaml` records when the run was continued (None: `settings.steps`)."""

    def continued_to(self, at_step: int, steps: int) -> Job:
        """This job continued from checkpoint step `at_step` to `steps` steps in all."""
        return replace(
            self,
            settings=replace(self.settings, steps=steps),
            continued=(*self.continued, (at_step, steps)),
            first_steps=self.schedule_steps,
        )

    @property
    def schedule_steps(self) -> int:
        """The total the learning-rate schedule was first laid out for."""
        return self.first_steps if self.first_steps is not None else self.settings.steps

    def resolved(self) -> Job:
        """The job with its `auto` loss normalizations made concrete for its teachers (what the
        run's `config.yaml` records)."""
        loss = self.settings.loss.resolved(len(self.teachers))
        return replace(self, settings=replace(self.settings, loss=loss))


CHECKPOINT_NAME = re.compile(r"^step_(\d{7,})\.pt$")
CHECKSUM_SUFFIX = ".sha256"
LOCK_TTL = 60.0
"""Seconds the run lock outlives its last refresh (every 15 s) when its holder is on another host
(one of this host that is gone is taken over at once)."""


def checkpoint_name(step: int) -> str:
    """A checkpoint's file name: `step_NNNNNNN.pt`."""
    return f"step_{step:07d}.pt"


def environment(world_size: int) -> dict[str, Any]:
    return {**pipeline_environment(), "world_size": world_size}


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        """Where the checkpoint of `step` is (or would be) published."""
        return self.checkpoints / checkpoint_name(step)

    def checkpoint_files(self) -> list[Path]:
        """The run's published checkpoints, oldest first (temporary files are not listed)."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.glob("step_*.pt") if CHECKPOINT_NAME.match(p.name)]
        return sorted(found, key=lambda p: int(CHECKPOINT_NAME.match(p.name).group(1)))

    def checksum(self, checkpoint: Path) -> Path:
        """The sha256 of `checkpoint`, in `sha256sum`'s format: `step_NNNNNNN.pt.sha256`."""
        return Path(checkpoint).with_name(Path(checkpoint).name + CHECKSUM_SUFFIX)

    def leftovers(self) -> list[Path]:
        """Files of `checkpoints/` no checkpoint needs: the temporary files of a write that was
        killed (each as large as a checkpoint) and the checksums of deleted checkpoints."""
        if not self.checkpoints.is_dir():
            return []
        published = {p.name for p in self.checkpoint_files()}
        return [
            p
            for p in sorted(self.checkpoints.iterdir())
            if is_temporary(p)
            or (
                p.name.endswith(CHECKSUM_SUFFIX)
                and p.name[: -len(CHECKSUM_SUFFIX)] not in published
            )
        ]

    @property
    def inputs(self) -> Path:
        """`inputs.json`: the identity of every input (`student.inputs`)."""
        return self.root / "inputs.json"

    @property
    def lock_path(self) -> Path:
        return self.root / "train.lock"

    def lock(self) -> Claim:
        """Own the run directory until `release()`: a live holder is refused in one line naming
        it (one on another host only once its lock stops being refreshed, `LOCK_TTL`)."""
        held = claim_or_wait(self.root, self.lock_path.stem, worker_id(), LOCK_TTL)
        if isinstance(held, LockInfo):
            raise FileExistsError(
                f"{self.root} is in use by another student train process ({held.describe()}); "
                "let it finish or stop it, then run again (a second run needs another --out)"
            )
        return held

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files (with `tensorboard=true`)."""
        return self.root / "tensorboard"

    @property
    def architecture(self) -> Path:
        """`model/`: the init's model config and image processor, without weights."""
        return self.root / "model"

    def write_job(self, job: Job) -> None:
        """Record `job` in `config.yaml` (what `--resume` and `student export` read)."""
        self.write_config(
            {
                "dataset": str(job.dataset),
                "teachers": job.teachers,
                "init": str(job.init),
                "settings": to_dict(job.settings),
            }
        )

    @property
    def continuations(self) -> Path:
        return self.root / "continued.yaml"

    def read_job(self) -> Job:
        """The job `config.yaml` records, its settings checked like a settings file, continued
        to the totals `continued.yaml` records (`--resume --steps N`)."""
        saved = self.read_config()
        job = Job(
            Path(saved["dataset"]),
            list(saved["teachers"]),
            saved["init"],
            self.root,
            from_dict(TrainSettings, saved["settings"]),
        )
        for entry in self.read_continuations():
            job = job.continued_to(int(entry["at_step"]), int(entry["steps"]))
        return job

    def read_continuations(self) -> list[dict[str, Any]]:
        if not self.continuations.is_file():
            return []
        return list(yaml.safe_load(self.continuations.read_text()) or [])

    def record_continuation(self, at_step: int, steps: int, previous: int) -> None:
        """Append `--resume --steps` from checkpoint step `at_step` to `steps` in all (from
        `previous`) to `continued.yaml`, beside the unchanged `config.yaml` (rank 0)."""
        entries = self.read_continuations()
        entry = {"at_step": at_step, "steps": steps, "previous_steps": previous}
        entry["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_bytes(self.continuations, yaml.safe_dump([*entries, entry], sort_keys=False).encode())

    def move_dataset(self, dataset: Path) -> None:
        """Record in `config.yaml` that the run's dataset is now at `dataset` (rank 0)."""
        config = self.read_config()
        config["dataset"] = str(dataset)
        self.write_config(config)

    def write_config(self, run: dict[str, Any]) -> None:
        write_bytes(self.config, yaml.safe_dump(run, sort_keys=False).encode())

    def read_config(self) -> dict[str, Any]:
        if not self.config.is_file():
            raise FileNotFoundError(
                f"{self.config} not found: {self.root} is not a run directory of `student train`"
            )
        return yaml.safe_load(self.config.read_text())

    def write_env(
        self, world_size: int, resumed_at: int | None = None, device: str | None = None
    ) -> None:
        """Record the environment in `env.json`, with the `device` type the session trains on
        (what the model card reads the precision that ran from). A resumed session keeps the
        first session's record and appends its own, with the step it resumed from, to the
        `resumes` list."""
        path = self.root / "env.json"
        env = environment(world_size) | ({"device": device} if device else {})
        if resumed_at is not None and path.is_file():
            first = json.loads(path.read_text())
            first.setdefault("resumes", []).append({"step": resumed_at, **env})
            env = first
        write_bytes(path, json.dumps(env, indent=1).encode())
