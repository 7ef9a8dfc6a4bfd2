"""Multi-scale gradient matching on normalized maps (MiDaS lineage; losses.md "Gradient matching").

Shapes: `pred`, `target`, `mask` are `[B, H, W]` or `[B, 1, H, W]`; both layouts give the same
loss (the loss works on `[B, H, W]` inside, so the horizontal term is never dropped).

Residual `r = m · (N(p) - N(t))` with N from `normalized_maps` (for `hybrid`/`local`, the per-pixel
mean of the pixel's context-normalized values over its levels; `none`: raw values). For scale
k = 0 .. scales-1, take every 2^k-th pixel in both directions, sum `|r[:, :, 1:] - r[:, :, :-1]|`
over horizontal pairs whose two pixels are valid and the same along columns, and divide by the
number of valid pixels at that scale over the whole batch (batch-based reduction, as MiDaS); the
scales are summed. A scale without valid pixels contributes 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import EPS
from .normalize import normalized_maps


def _scale_term(r: Tensor, valid: Tensor) -> Tensor:
    """Sum of |differences| over valid neighbour pairs along x and y, over valid pixel count."""
    pair_x = valid[:, :, 1:] & valid[:, :, :-1]
    pair_y = valid[:, 1:, :] & valid[:, :-1, :]
    grad_x = torch.where(pair_x, (r[:, :, 1:] - r[:, :, :-1]).abs(), 0.0)
    grad_y = torch.where(pair_y, (r[:, 1:, :] - r[:, :-1, :]).abs(), 0.0)
    return (grad_x.sum() + grad_y.sum()) / valid.sum().clamp(min=1)


def gradient_matching_residual(residual: Tensor, valid: Tensor, scales: int = 4) -> Tensor:
    """Multi-scale gradient loss of a residual `[B, H, W]` with validity `[B, H, W]` (bool)."""
    if isinstance(scales, bool) or not isinstance(scales, int) or scales < 1:
        raise ValueError(f"scales must be an integer ≥ 1, got {scales!r}")
    if residual.dim() != 3 or valid.shape != residual.shape:
        raise ValueError(
            f"residual must be [B, H, W] with a valid mask of the same shape, got "
            f"{tuple(residual.shape)} and {tuple(valid.shape)}"
        )
    r = torch.where(valid, residual, 0.0)
    total = r.new_zeros(())
    for k in range(scales):
        step = 2**k
        total = total + _scale_term(r[:, ::step, ::step], valid[:, ::step, ::step])
    return total


def gradient_matching(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    norm: str = "global",
    scales: int = 4,
    eps: float = EPS,
) -> Tensor:
    """Scalar multi-scale gradient matching loss between the normalized `pred` and `target`.

    pred, target: `[B, H, W]` or `[B, 1, H, W]`; mask: bool of the same shape or None.
    norm: a name of `NORMALIZATIONS`; scales: number of scales (4 in MiDaS).
    """
    norm_p, norm_t, valid = normalized_maps(pred, target, mask, norm, eps)
    return gradient_matching_residual(norm_p - norm_t, valid, scales)
