"""A training run directory: resolved config, environment, metrics and checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.toolkit.atomic import write_bytes
from pipeline.toolkit.environment import environment as pipeline_environment


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
    def architecture(self) -> Path:
        """`model/`: the init's model config and image processor, without weights."""
        return self.root / "model"

    def write_config(self, run: dict[str, Any]) -> None:
        write_bytes(self.config, yaml.safe_dump(run, sort_keys=False).encode())

    def read_config(self) -> dict[str, Any]:
        if not self.config.is_file():
            raise FileNotFoundError(
                f"{self.config} not found: {self.root} is not a run directory of `student train`"
            )
        return yaml.safe_load(self.config.read_text())

    def write_env(self, world_size: int, resumed_at: int | None = None) -> None:
        """Record the environment in `env.json`. A resumed session keeps the first session's
        record and appends its own, with the step it resumed from, to the `resumes` list."""
        path = self.root / "env.json"
        env = environment(world_size)
        if resumed_at is not None and path.is_file():
            first = json.loads(path.read_text())
            first.setdefault("resumes", []).append({"step": resumed_at, **env})
            env = first
        write_bytes(path, json.dumps(env, indent=1).encode())

    def log_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop records of steps after the checkpoint (they will be redone)."""
        if not self.metrics.exists():
            return
        keep = [
            line
            for line in self.metrics.read_text().splitlines()
            if line and json.loads(line)["step"] <= after_step
        ]
        write_bytes(self.metrics, ("\n".join(keep) + "\n" if keep else "").encode())
