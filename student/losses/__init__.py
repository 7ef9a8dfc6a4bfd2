"""Losses and normalizations of the student (reference/losses.md; paper Eq. 1-9).

Each loss returns a scalar tensor. The normalized L1 and gradient losses take `[B, H, W]` or
`[B, 1, H, W]` maps; the feature loss `[B, N, C]` tokens; `local_global_loss` the prediction of
the regions, their padded tiles `[B, T, h, w]`, tile and region boxes and the tile counts
(`student.data.samples.pad_tiles`). `NORMALIZATIONS` maps each normalization name to its context
levels. `metric` holds what a metric student learns from: canonical depth and the log losses
(`silog_loss`, `log_l1_loss`, `far_loss`; `local_global_log_loss` on tiles) on `[B, ...]` maps
with a validity mask.
"""

from ._common import NORMALIZATIONS
from .cross_context import (
    DEFAULT_WEIGHTS,
    local_global_gradient,
    local_global_log_loss,
    local_global_loss,
    shared_context_loss,
    total_loss,
    whole_regions,
)
from .feature import FeatureAlignment, feature_alignment
from .gradient import gradient_matching
from .metric import (
    canonical_depth,
    far_loss,
    log_l1_loss,
    log_loss_per_image,
    metric_depth,
    silog_loss,
)
from .normalize import normalized_l1, normalized_l1_per_image, normalized_maps

__all__ = [
    "DEFAULT_WEIGHTS",
    "NORMALIZATIONS",
    "FeatureAlignment",
    "canonical_depth",
    "far_loss",
    "feature_alignment",
    "gradient_matching",
    "local_global_gradient",
    "local_global_log_loss",
    "local_global_loss",
    "log_l1_loss",
    "log_loss_per_image",
    "metric_depth",
    "normalized_l1",
    "normalized_l1_per_image",
    "normalized_maps",
    "shared_context_loss",
    "silog_loss",
    "total_loss",
    "whole_regions",
]
