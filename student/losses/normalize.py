"""Context normalization and the normalized L1 distillation loss (paper Eq. 1-6).

Shapes: `pred`, `target`, `mask` are `[B, H, W]` or `[B, 1, H, W]` (mask bool, same shape).
Valid pixels: `mask & isfinite(target) & isfinite(pred)` (mask None = all pixels).

Contexts come from the TARGET's value range over the valid pixels of each image: a level S splits
`[tmin, tmax]` into S equal ranges, the top one closed. `global` = S 1, `hybrid` = S 1, 2, 4 (each
pixel in 3 contexts), `local` = S 4, `none` = raw values. Each context is normalized separately for
pred and target by its median over its valid pixels (lower median for even counts, like
`torch.median`) and its mean absolute deviation: `N(x) = (x - med) / (mad + eps)`.

Per pixel: mean over its contexts of `|N(p) - N(t)|`; per image: mean over its valid pixels; batch:
mean over the images that have at least one valid pixel (an image without valid pixels contributes
nothing and does not count in the denominator; an all-empty batch gives 0 with zero gradients).

Vectorized, no loop over contexts, pixels or images: one histogram selection finds the medians of
all contexts of all levels, images and both maps (`_select.py`; no sort of the maps); per level the
MAD is a `scatter_add` by context column (a broadcast sum for the global level). The target is
normalized outside autograd unless it requires a gradient.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ._common import EPS, levels_for, prepare, range_edges
from ._select import gather_medians, median_index


def fine_bins(target: Tensor, valid: Tensor, s: int) -> Tensor:
    """Bin `[B, P]` (int64) of each pixel among `s` equal ranges of its image's valid targets.

    Invalid pixels get bin `s` (a dump bin that belongs to no context).
    """
    flat, v = target.flatten(1), valid.flatten(1)
    if s == 1:
        return (~v).to(torch.int64)
    edges = range_edges(target, valid, s)
    bins = (flat >= edges[:, :1]).to(torch.uint8)  # uint8 sums: a quarter of int64's traffic
    for k in range(1, s - 1):
        bins += flat >= edges[:, k : k + 1]
    return torch.where(v, bins, s).to(torch.int64)


def _level_column(fine: Tensor, n_fine: int, s: int) -> Tensor:
    """Context column `[B, P]` of each pixel at level s; the dump bin n_fine maps to column s."""
    group = n_fine // s
    if group == 1:
        return fine
    if group & (group - 1) == 0:
        return fine >> (group.bit_length() - 1)
    return torch.where(fine < n_fine, fine // group, s)


def _normalize_global(x: Tensor, med: Tensor, count: Tensor, valid: Tensor, eps: float) -> Tensor:
    """One context per image: broadcast statistics, no gather. x `[B, P]`, med, count `[B, 1]`."""
    centered = torch.where(valid, x - med, 0.0)
    dev = centered.abs().sum(-1, keepdim=True)
    return centered * (1.0 / (dev / count.clamp(min=1) + eps))


def _normalize_level(x: Tensor, med: Tensor, count: Tensor, col: Tensor, eps: float) -> Tensor:
    """Contexts by column: x `[B, P]`, med `[B, S]`, count `[B, S]`, col `[B, P]` in 0..S.

    Column S is a dump for invalid pixels (median 0 on sanitized zeros: they normalize to 0).
    """
    med = torch.cat([med, med.new_zeros(med.shape[0], 1)], 1)
    count = torch.cat([count, count.new_ones(count.shape[0], 1)], 1)
    centered = x - med.gather(1, col)
    dev = torch.zeros_like(med).scatter_add(1, col, centered.abs())
    inv = 1.0 / (dev / count.clamp(min=1) + eps)
    return centered * inv.gather(1, col)


def _normalized_levels(
    p: Tensor, t: Tensor, valid: Tensor, levels: tuple[int, ...], eps: float
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield, per level, the normalized maps `(N(p), N(t))`, each `[B, P]`; 0 on invalid pixels.

    Both maps share one median selection; each is then normalized on its own, the target without
    autograd unless it requires a gradient (labels do not: no backward work is spent on them).
    """
    n_fine = max(levels)
    if any(n_fine % s for s in levels):
        raise ValueError(f"levels {levels} must all divide the finest level {n_fine}")
    maps = (p.flatten(1), t.flatten(1))
    fine = fine_bins(t, valid, n_fine)
    index, count = median_index(torch.stack([m.detach() for m in maps]), fine, n_fine, levels)
    v = valid.flatten(1)
    offset = 0
    for s in levels:
        col = None if s == 1 else _level_column(fine, n_fine, s)
        out = []
        for m, x in enumerate(maps):
            with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
                med = gather_medians(x, index[m, :, offset : offset + s])
                n = count[:, offset : offset + s]
                if col is None:
                    out.append(_normalize_global(x, med, n, v, eps))
                else:
                    out.append(_normalize_level(x, med, n, col, eps))
        yield out[0], out[1]
        offset += s


def normalized_l1_per_image(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, norm: str = "global", eps: float = EPS
) -> tuple[Tensor, Tensor]:
    """Per-image losses `[B]` and `has_pixels [B]` (bool: the image has a valid pixel)."""
    levels = levels_for(norm)
    p, t, valid = prepare(pred, target, mask)
    count = valid.flatten(1).sum(1)
    if not levels:
        total = (p - t).abs().flatten(1).sum(1)
    else:
        total = p.new_zeros(p.shape[0])
        for norm_p, norm_t in _normalized_levels(p, t, valid, levels, eps):
            total = total + (norm_p - norm_t).abs().sum(1)
        total = total / len(levels)
    return total / count.clamp(min=1), count > 0


def normalized_l1(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, norm: str = "global", eps: float = EPS
) -> Tensor:
    """Normalized L1 distillation loss (scalar): mean over images with at least one valid pixel.

    pred, target: `[B, H, W]` or `[B, 1, H, W]` disparity; mask: bool, same shape, or None.
    norm: one of `NORMALIZATIONS` (`global`, `hybrid`, `local`, `none`).
    """
    losses, has = normalized_l1_per_image(pred, target, mask, norm, eps)
    return losses.sum() / has.sum().clamp(min=1)


def normalized_maps(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, norm: str = "global", eps: float = EPS
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalized maps `(N(pred), N(target), valid)`, each `[B, H, W]`; 0 on invalid pixels.

    For `hybrid` (and any multi-level norm) N is the per-pixel mean, over the levels, of the
    pixel's context-normalized values; `none` returns the raw values.
    """
    levels = levels_for(norm)
    p, t, valid = prepare(pred, target, mask)
    if not levels:
        return p, t, valid
    sum_p, sum_t = 0.0, 0.0
    for norm_p, norm_t in _normalized_levels(p, t, valid, levels, eps):
        sum_p, sum_t = sum_p + norm_p, sum_t + norm_t
    return (sum_p / len(levels)).view_as(p), (sum_t / len(levels)).view_as(p), valid
