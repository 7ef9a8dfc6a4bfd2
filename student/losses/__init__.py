"""Losses and normalizations of the student (reference/losses.md; paper Eq. 1-9).

Each loss takes `[B, H, W]` or `[B, 1, H, W]` maps (features: `[B, N, C]` tokens) and returns a
scalar tensor. `NORMALIZATIONS` maps each normalization name to its context levels.
"""

from ._common import NORMALIZATIONS
from .cross_context import (
    DEFAULT_WEIGHTS,
    local_global_gradient,
    local_global_loss,
    shared_context_loss,
    total_loss,
)
from .feature import FeatureAlignment, feature_alignment
from .gradient import gradient_matching
from .normalize import normalized_l1, normalized_l1_per_image, normalized_maps

__all__ = [
    "DEFAULT_WEIGHTS",
    "NORMALIZATIONS",
    "FeatureAlignment",
    "feature_alignment",
    "gradient_matching",
    "local_global_gradient",
    "local_global_loss",
    "normalized_l1",
    "normalized_l1_per_image",
    "normalized_maps",
    "shared_context_loss",
    "total_loss",
]
