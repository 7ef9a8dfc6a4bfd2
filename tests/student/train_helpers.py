"""Shared by the `student train` tests: the CLI runner, fast settings, a training call and the
run's metrics."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from student.cli import app

runner = CliRunner()
FAST = ["--set", "data.size=112", "--set", "data.workers=0", "--set", "log_every=1"]
"""Small inputs, no loader workers, a record every step."""


def train(run: Path, dataset: Path, init: Path, *extra: str) -> list[dict]:
    """`student train` of the two teachers alpha and beta into `run`; its metrics records."""
    args = [
        "train",
        "--out",
        str(run),
        "--dataset",
        str(dataset),
        "--teacher",
        "alpha",
        "--teacher",
        "beta",
        "--init",
        str(init),
        *FAST,
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return read_metrics(run)


def read_metrics(run: Path) -> list[dict]:
    """The records of `run/metrics.jsonl`."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]
