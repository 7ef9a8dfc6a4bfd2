"""How a process runs a command: its device, worker processes, precision and progress display.

One dataclass that every command takes as its launch options (`--device`, `--workers`,
`--precision`, `--progress/--no-progress`), as litgpt's commands share `TrainArgs`/`EvalArgs`:
a command declares the group as a parameter, `launch: Launch = SettingsOptions(Launch,
fields=(...), defaults={...})`, exposing the fields it uses with its own defaults. A `Launch` that
exists is valid: every rule is checked when it is built.

Launch options say how this process works, not what it computes: they are not part of a label
column's identity or a run's recorded settings (a `--resume` may choose them anew), except the
precision of a teacher, which the label column records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRECISION_NAMES = ("bf16", "fp16", "fp32")
"""What every `--precision` takes (`pipeline.model.precision.PRECISIONS` maps them to dtypes)."""
DEVICE = re.compile(r"^(auto|cpu|mps|(cuda|xpu)(:\d+)?)$")


def check_precision_name(precision: str, flag: str = "--precision") -> str:
    """`precision` if it is one of `PRECISION_NAMES`, else a ValueError naming `flag`."""
    if precision not in PRECISION_NAMES:
        raise ValueError(f"{flag} must be one of {', '.join(PRECISION_NAMES)}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class Launch:
    """How this process runs a command (see the module docstring)."""

    device: str = "auto"
    """Torch device: auto = this rank's GPU (cuda:LOCAL_RANK) when there is one, else the CPU;
    or e.g. cpu, cuda:1."""
    workers: int | None = None
    """Worker processes that read and decode the inputs (0: in this process); unset (None):
    min(4, usable CPUs)."""
    precision: str = "fp32"
    """Model precision on GPU: bf16, fp16 or fp32 (the CPU always computes in fp32)."""
    progress: bool = True
    """Show progress: a bar on a terminal, else a line every 30 s."""

    def __post_init__(self) -> None:
        if not DEVICE.match(self.device):
            raise ValueError(
                f"--device must be auto, cpu, cuda, cuda:N, mps or xpu, got {self.device!r}"
            )
        if self.workers is not None and self.workers < 0:
            raise ValueError(
                f"--workers must be ≥ 0 (0: in this process), got {self.workers}; leave it out "
                "for min(4, usable CPUs)"
            )
        check_precision_name(self.precision)
