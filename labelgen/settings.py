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

if TYPE_CHECKING:
    import torch

log = logging.getLogger("labelgen")


@dataclass
class RunSettings:
    """Settings of `labelgen run` (each field is the flag of the same name, `batch_size` is
    `--batch-size`); `labelgen estimate` takes the ones that matter for a sample."""

    format: str = "wds"
    """Label backend: 'wds' (tar per shard + offset index) or 'zarr' (Zarr v3 group per shard)."""
    codec: str = "pcodec-f16"
    """Label codec: pcodec-f16, blosc-zstd-f16 or pcodec-f32 (see `pipeline.labels.codecs`)."""
    batch_size: int = 16
    """Views per teacher forward pass; halved automatically on out-of-memory."""
    precision: str = "bf16"
    """Teacher precision: bf16, fp16 or fp32 (fp32 is used on CPU whatever is asked). The depth
    head of Transformers teachers computes in float32 in any case, so labels are not rounded to
    bf16."""
    device: str = "auto"
    """Torch device: auto = this rank's GPU (cuda:LOCAL_RANK) when there is one, else the CPU;
    or e.g. cpu, cuda:1."""
    workers: int | None = None
    """DataLoader worker processes decoding images and building views (0: in this process);
    unset (None): min(4, usable CPUs)."""
    encode_threads: int = 4
    """Threads compressing finished labels while the device runs the next batches."""
    claim: bool = False
    """Claim shards dynamically with expiring lock files instead of a static rank split."""
    claim_ttl: float = 900.0
    """Seconds after which a claim that is no longer refreshed counts as abandoned."""
    overwrite: bool = False
    """Replace a column whose teacher weights, options, precision, codec or backend changed
    (redo its shards)."""
    progress: bool = True
    """Show progress: a bar on a terminal, else a line every 30 s."""

    def validate(self) -> None:
        from pipeline.model.precision import PRECISIONS

        BACKENDS.get(self.format)
        get_codec(self.codec)
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"--precision must be one of {tuple(PRECISIONS)}, got {self.precision!r}"
            )
        if self.batch_size < 1 or (self.workers or 0) < 0 or self.claim_ttl <= 0:
            raise ValueError("--batch-size must be ≥ 1, --workers ≥ 0 and --claim-ttl > 0")
        if self.encode_threads < 1:
            raise ValueError(f"--encode-threads must be ≥ 1, got {self.encode_threads}")


def inference_precision(s: RunSettings, device: torch.device) -> str:
    if device.type == "cpu" and s.precision != "fp32":
        log.info("CPU device: running the teacher in fp32 instead of %s", s.precision)
        return "fp32"
    return s.precision
