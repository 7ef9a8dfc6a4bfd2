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


def checkpoint_run(root: Path, init: Path) -> Path:
    """`root/run`: a run directory whose one checkpoint is the untrained student of `init`."""
    from student.checkpoint import save_checkpoint
    from student.model import load_student
    from student.rundir import RunDir

    run = root / "run"
    RunDir(run).write_config({"init": str(init)})
    save_checkpoint(run, 1, {"model": load_student(init, frozen_encoder=False).model.state_dict()})
    return run


def export_onnx(run: Path, out: Path, *extra: str) -> Path:
    """`student export RUN --format onnx --out OUT EXTRA...`, which must succeed; OUT."""
    result = runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


def onnx_difference(run: Path, model_dir: Path, sizes: list[tuple[int, int, int]]) -> float:
    """The largest `max |onnx - torch| / (torch max - torch min)` of the ONNX export in
    `model_dir` against the run's PyTorch student, over random inputs of `sizes` (batch, height,
    width); the outputs must be finite float32 maps of the input's size."""
    import numpy as np
    import torch

    from student.export import load_run_student
    from student.onnx_export import onnx_session, run_onnx

    student = load_run_student(run)[0]
    session = onnx_session(model_dir)
    worst = 0.0
    for i, (b, h, w) in enumerate(sizes):
        x = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            expected = student(x)["pred"].numpy()
        got = run_onnx(session, x.numpy())
        assert got.shape == (b, 1, h, w) and got.dtype == np.float32
        spread = float(expected.max() - expected.min())
        assert spread > 0 and np.isfinite(got).all()
        worst = max(worst, float(np.abs(got - expected).max()) / spread)
    return worst
