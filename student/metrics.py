"""What a training run records of its steps: `RUN/metrics.jsonl` and, with `tensorboard=true`,
the same values as TensorBoard scalars in `RUN/tensorboard`.

A step's record holds every loss term (averaged over the step's micro-batches), the scale of the
prediction (`pred_median`, `pred_mad`, `flat_fraction`: `student.diagnostics.prediction_scale`,
averaged over the micro-batches; TensorBoard `pred/median`, `pred/mad`, `pred/flat_fraction`), the
learning rate of each parameter group, the gradient norm, the data and step times and the
teacher(s) drawn. A step that was not taken is recorded as `{"step", "skipped", "keys"}`
(metrics.jsonl only). Only rank 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.toolkit.atomic import write_bytes
from pipeline.toolkit.faults import name_the_file
from student.diagnostics import SCALE_FIELDS
from student.rundir import RunDir


def step_record(
    step: int,
    micro: list[tuple[dict[str, Any], Any]],
    lrs: dict[str, float],
    grad_norm: float,
    data_s: float,
    step_s: float,
) -> dict[str, Any]:
    """The `metrics.jsonl` record of `step` from its micro-batches' `(terms, teacher)` pairs (the
    terms: the loss terms and the prediction's `SCALE_FIELDS`, each averaged here)."""
    terms = {k: sum(float(t[k]) for t, _ in micro) / len(micro) for k in micro[0][0]}
    return {
        "step": step,
        **terms,
        "lr": lrs,
        "grad_norm": grad_norm,
        "data_time": data_s,
        "step_time": step_s,
        "teacher": [teacher for _, teacher in micro],
    }


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
        elif name in SCALE_FIELDS:
            scalars[f"pred/{name.removeprefix('pred_')}"] = value
        else:
            scalars[f"loss/{name}"] = value
    return scalars


def _tensorboard(folder: Path, step: int):
    """A writer into `folder` (`RUN/tensorboard`). Resuming from a checkpoint at `step` hides the
    events an interrupted run wrote after it: the resumed run writes those steps again."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ValueError(
            "tensorboard=true needs the tensorboard package: pip install tensorboard "
            '(or pip install "distill-any-depth-pipeline[tensorboard]")'
        ) from e
    return SummaryWriter(str(folder), purge_step=step + 1 if step else None)


class MetricsLog:
    """The run's `metrics.jsonl` (and TensorBoard events with `tensorboard`) from step `step` on.

    Use on rank 0 only; `close()` when the session ends.
    """

    def __init__(self, run: RunDir, step: int, tensorboard: bool = False) -> None:
        self.path = run.metrics
        self.board = _tensorboard(run.tensorboard, step) if tensorboard else None

    def step(self, record: dict[str, Any]) -> None:
        """Record a step that was taken (`step_record`)."""
        self.append(record)
        if self.board is not None:
            for tag, value in board_scalars(record).items():
                self.board.add_scalar(tag, value, record["step"])

    def append(self, record: dict[str, Any]) -> None:
        """Append one record to `metrics.jsonl` (a skipped step's, for instance): the whole line
        or, when the disk is full, nothing (the error names the file)."""
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with open(self.path, "ab", buffering=0) as f:
            end = f.tell()
            try:
                while line:
                    line = line[f.write(line) :]
            except OSError as e:
                f.truncate(end)  # no half line for a reader to choke on
                name_the_file(e, self.path)
                raise

    def flush(self) -> None:
        """Make what was recorded so far visible (with each checkpoint)."""
        if self.board is not None:
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def truncate_metrics(run: RunDir, after_step: int) -> None:
    """On resume, drop the records of steps after the checkpoint (they will be redone)."""
    path = run.metrics
    if not path.exists():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line and json.loads(line)["step"] <= after_step
    ]
    write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())
