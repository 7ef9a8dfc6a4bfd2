"""Metric students for the tests: a tiny metric Depth Anything checkpoint trained on canonical
depth (`canonical_focal_px` in its config.json), and a run directory of one."""

from __future__ import annotations

import json
from pathlib import Path

F_C = 300.0
"""The canonical focal length (pixels of the model's input) of the tests' metric students."""


def write_metric_student(out_dir: Path, f_c: float | None = F_C, seed: int = 0) -> Path:
    """The tiny metric Depth Anything checkpoint (`--size tiny-metric-indoor`, max depth 20) in
    `out_dir`, its config.json given `canonical_focal_px: f_c` (left out for None)."""
    from labelgen.teachers import write_checkpoint

    out = write_checkpoint("depth-anything-v2", out_dir, "tiny-metric-indoor", seed)
    if f_c is not None:
        config = json.loads((out / "config.json").read_text())
        config["canonical_focal_px"] = f_c
        (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def metric_run(root: Path, init: Path, f_c: float | None = F_C, max_depth: float = 20.0) -> Path:
    """`root/run`: a run directory of a metric student (`student.output: metric`) whose one
    checkpoint (step 1) holds the untrained model of the metric checkpoint `init`."""
    from student.checkpoint import save_checkpoint
    from student.model import load_student
    from student.rundir import RunDir

    run = root / "run"
    student = {"output": "metric", "canonical_focal": f_c, "max_depth": max_depth}
    RunDir(run).write_config({"init": str(init), "student": student})
    save_checkpoint(run, 1, {"model": load_student(init, frozen_encoder=False).model.state_dict()})
    return run
