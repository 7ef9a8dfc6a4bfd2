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
- `far_loss`: where the label is far (sky, +inf, or beyond what the student outputs), the log
  prediction is pulled up to a far depth (a hinge: free beyond it).
Depths are clamped below at `MIN_DEPTH` before the logarithm.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MIN_DEPTH = 1e-3
"""Metres (or canonical units): the floor before a logarithm."""
LOG_LOSSES = ("silog", "log_l1")


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


def log_loss_per_image(
    pred: Tensor, target: Tensor, valid: Tensor, kind: str = "silog", lam: float = 0.85
) -> tuple[Tensor, Tensor]:
    """Per image `[B]`: the `silog` (with λ = `lam`) or `log_l1` loss over its valid pixels, and
    whether it has one (`[B]` bool; the loss is 0 where it has none)."""
    if kind not in LOG_LOSSES:
        raise ValueError(f"log loss must be one of {LOG_LOSSES}, got {kind!r}")
    if not 0 <= lam <= 1:
        raise ValueError(f"silog λ must be in [0, 1], got {lam}")
    g, n = _log_error(pred, target, valid)
    has = n > 0
    n = n.clamp(min=1)
    if kind == "log_l1":
        return g.abs().sum(1) / n * has, has
    mean, mean_sq = g.sum(1) / n, (g * g).sum(1) / n
    per_image = (mean_sq - lam * mean * mean).clamp(min=0)
    return torch.sqrt(per_image + 1e-12) * has, has


def _mean_over(per_image: Tensor, has: Tensor) -> Tensor:
    return per_image.sum() / has.sum().clamp(min=1)


def silog_loss(pred: Tensor, target: Tensor, valid: Tensor, lam: float = 0.85) -> Tensor:
    """The scale-invariant log loss (module docstring), the mean over images with a valid
    pixel; 0 when none has one."""
    return _mean_over(*log_loss_per_image(pred, target, valid, "silog", lam))


def log_l1_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """`mean(|log p - log t|)` per image over its valid pixels, the mean over images with one."""
    return _mean_over(*log_loss_per_image(pred, target, valid, "log_l1"))


def far_loss(pred: Tensor, far: Tensor, far_depth: float) -> Tensor:
    """`mean(relu(log far_depth - log p))` over each image's `far` pixels (sky, or labels beyond
    what the student can output), the mean over images with one: pulls the prediction up to at
    least `far_depth` there and leaves it free beyond."""
    b = pred.shape[0]
    pred, far = pred.reshape(b, -1), far.reshape(b, -1)
    short = torch.relu(math.log(far_depth) - torch.log(pred.clamp(min=MIN_DEPTH)))
    n = far.sum(1)
    per_image = torch.where(far, short, 0.0).sum(1) / n.clamp(min=1)
    return _mean_over(per_image, n > 0)
