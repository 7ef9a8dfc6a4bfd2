"""Settings of `labelgen run` and `labelgen estimate`: each field is a flag of the same name,
derived from the field (`pipeline.toolkit.options`), so its default and help text live here.

The module imports no torch, so that the command line starts (and `--help` answers) quickly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.labels.codecs import get_codec
from pipeline.labels.store import BACKENDS
from pipeline.toolkit.launch import Launch

if TYPE_CHECKING:
    import torch

log = logging.getLogger("labelgen")


@dataclass
class RunSettings:
    """Settings of `labelgen run` (each field is the flag of the same name, `batch_size` is
    `--batch-size`); `labelgen estimate` takes the ones that matter for a sample. Device,
    workers, precision and progress are launch options (`pipeline.toolkit.launch.Launch`)."""

    format: str = "wds"
    """Label backend: 'wds' (tar per shard + offset index) or 'zarr' (Zarr v3 group per shard)."""
    codec: str = "pcodec-f16"
    """Label codec: pcodec-f16, blosc-zstd-f16 or pcodec-f32 (see `pipeline.labels.codecs`)."""
    batch_size: int = 16
    """Views per teacher forward pass; halved automatically on out-of-memory."""
    encode_threads: int = 4
    """Threads compressing finished labels while the device runs the next batches."""
    claim: bool = False
    """Claim shards dynamically with expiring lock files instead of a static rank split."""
    claim_ttl: float = 900.0
    """Seconds after which a claim that is no longer refreshed counts as abandoned."""
    overwrite: bool = False
    """Replace a column whose teacher weights, options, precision, codec or backend changed
    (redo its shards)."""
    tasks_per_job: int = 1
    """N: each process runs the shares of N workers of an N-times larger static split, one after
    another with the teacher loaded once: array task t of T labels the shares of workers t, t+T,
    ..., t+(N-1)T of T*N (for SLURM arrays capped by MaxArraySize)."""

    def __post_init__(self) -> None:
        """Settings that exist are valid (checked again by `dataclasses.replace`)."""
        BACKENDS.get(self.format)
        get_codec(self.codec)
        if self.batch_size < 1 or self.claim_ttl <= 0:
            raise ValueError("--batch-size must be ≥ 1 and --claim-ttl > 0")
        if self.tasks_per_job < 1:
            raise ValueError(f"--tasks-per-job must be ≥ 1, got {self.tasks_per_job}")
        if self.encode_threads < 1:
            raise ValueError(f"--encode-threads must be ≥ 1, got {self.encode_threads}")


LAUNCH_DEFAULTS = {"precision": "bf16"}
"""`labelgen`'s own launch-option defaults (`pipeline.toolkit.launch.Launch`): teachers run in
bf16 on GPU. The depth head of Transformers teachers computes in float32 in any case, so labels
are not rounded to bf16; the column records the precision."""


def labelling_launch(launch: Launch | None = None) -> Launch:
    """`launch`, or labelgen's defaults (`LAUNCH_DEFAULTS`) when none is given."""
    return launch if launch is not None else Launch(**LAUNCH_DEFAULTS)


def inference_precision(precision: str, device: torch.device) -> str:
    """The precision a teacher runs in on `device`: fp32 on the CPU whatever is asked."""
    if device.type == "cpu" and precision != "fp32":
        log.info("CPU device: running the teacher in fp32 instead of %s", precision)
        return "fp32"
    return precision
