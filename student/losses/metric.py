"""What a metric student learns from: canonical depth and the scale-aware log losses.

Canonical depth. A view of an image keeps its depth in metres but not its camera: a crop keeps
the focal length in pixels and a resize by s multiplies it by s, so the same metres look like a
longer lens. A camera-agnostic student therefore learns canonical depth
`d_c = d · f_c / fx'`, with fx' the view's effective focal length (`pipeline.dataset.camera`)
and f_c a focal length fixed for the run: the depth the scene would have in a camera of focal
length f_c that sees it at the same pixel size. A prediction goes back to metres with the
known (or estimated) focal length of the image: `d = d_c · fx / f_c`.

Losses on log depth, per image over its valid pixels, then averaged over the batch:
- `silog_loss`: the scale-invariant log loss of Eigen et al. (2014),
  `sqrt(mean(g²) - λ · mean(g)²)` with `g = log p - log t`. λ = 0 is the RMS of the log error
  (fully scale-aware), λ = 1 ignores a global scale (a relative loss); in between (0.85 is
  common) the scale is learnt with a smaller weight than the structure.
- `log_l1_loss`: `mean(|log p - log t|)`, fully scale-aware and robust to outliers.
Depths are clamped below at `MIN_DEPTH` before the logarithm.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_DEPTH = 1e-3
"""Metres (or canonical units): the floor before a logarithm."""


def canonical_depth(depth: Tensor, fx: Tensor | float, f_c: float) -> Tensor:
    """`depth` (`[B, ...]`, metres) as canonical depth for views of effective focal lengths `fx`
    (pixels; a scalar or one per sample)."""
    return depth * (f_c / _per_sample(fx, depth))


def metric_depth(canonical: Tensor, fx: Tensor | float, f_c: float) -> Tensor:
    """The inverse of `canonical_depth`: metres for images of focal length `fx`."""
    return canonical * (_per_sample(fx, canonical) / f_c)


def _per_sample(fx: Tensor | float, like: Tensor) -> Tensor:
    fx = torch.as_tensor(fx, dtype=like.dtype, device=like.device)
    if not bool((fx > 0).all()):
        raise ValueError("focal lengths must be > 0 pixels")
    return fx.reshape(-1, *([1] * (like.dim() - 1))) if fx.dim() else fx


def _log_error(pred: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """`g = log p - log t` with invalid pixels zeroed, and the valid count per image, `[B, N]`
    and `[B]`."""
    b = pred.shape[0]
    pred, target, valid = pred.reshape(b, -1), target.reshape(b, -1), valid.reshape(b, -1)
    g = torch.log(pred.clamp(min=MIN_DEPTH)) - torch.log(target.clamp(min=MIN_DEPTH))
    return torch.where(valid, g, 0.0), valid.sum(1)


def silog_loss(pred: Tensor, target: Tensor, valid: Tensor, lam: float = 0.85) -> Tensor:
    """The scale-invariant log loss (module docstring), the mean over images with a valid
    pixel; 0 when none has one."""
    if not 0 <= lam <= 1:
        raise ValueError(f"silog λ must be in [0, 1], got {lam}")
    g, n = _log_error(pred, target, valid)
    has = n > 0
    n = n.clamp(min=1)
    mean, mean_sq = g.sum(1) / n, (g * g).sum(1) / n
    per_image = (mean_sq - lam * mean * mean).clamp(min=0)
    per_image = torch.sqrt(per_image + 1e-12) * has
    return per_image.sum() / has.sum().clamp(min=1)


def log_l1_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """`mean(|log p - log t|)` per image over its valid pixels, the mean over images with one."""
    g, n = _log_error(pred, target, valid)
    has = n > 0
    per_image = g.abs().sum(1) / n.clamp(min=1)
    return (per_image * has).sum() / has.sum().clamp(min=1)
