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
all contexts of all levels, images and both maps (`_select.py`; no sort of the maps). The global
level uses broadcast sums under autograd. Each finer level is one `ContextL1` (`_context.py`): both
maps normalized together (per-context MAD by one `scatter_add_`, medians and scales spread by one
`gather`), the per-image L1 sums returned, and a hand-written backward that does the work for the
maps that need a gradient only (not the labels). `normalized_maps` uses `ContextNormalize`, the
same computation per map.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ._common import EPS, levels_for, prepare, range_edges
from ._context import ContextL1, ContextNormalize, Contexts
from ._select import gather_medians, median_index


def fine_bins(target: Tensor, valid: Tensor, s: int) -> Tensor:
    """Bin `[B, P]` (uint8) of each pixel among `s` equal ranges of its image's valid targets.

    Invalid pixels get bin `s` (a dump bin that belongs to no context).
    """
    flat, v = target.flatten(1), valid.flatten(1)
    if s > 255:
        raise ValueError(f"at most 255 ranges, got {s}")
    if s == 1:
        return (~v).to(torch.uint8)
    edges = range_edges(target, valid, s)
    bins = (flat >= edges[:, :1]).to(torch.uint8)  # uint8 sums: a quarter of int64's traffic
    for k in range(1, s - 1):
        bins += flat >= edges[:, k : k + 1]
    return bins.masked_fill_(~v, s)


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


def _global_map(x: Tensor, index: Tensor, count: Tensor, valid: Tensor, eps: float) -> Tensor:
    """`N(x)` with one context per image, under autograd only if x requires a gradient."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
        return _normalize_global(x, gather_medians(x, index), count, valid, eps)


def _level_contexts(fine: Tensor, n_fine: int, s: int) -> Contexts:
    """Contexts of level s over the flat `[B * P]` pixels: id `b * (s + 1) + column` (s = dump)."""
    return Contexts.from_columns(_level_column(fine, n_fine, s), s + 1)


def _level_tables(index: Tensor, count: Tensor, s: int) -> tuple[Tensor, Tensor]:
    """Median positions `[B * (s + 1)]` and counts (float, ≥ 1) with a dump column per image.

    index: `[B, s]` flat positions of the medians (-1 empty); count: `[B, s]` context sizes.
    The dump column (invalid pixels, sanitized to 0) has no median (0) and count 1.
    """
    pos = torch.cat([index, index.new_full((index.shape[0], 1), -1)], 1).flatten()
    n = torch.cat([count, count.new_ones(count.shape[0], 1)], 1).flatten()
    return pos, n.clamp(min=1)


def _select(p: Tensor, t: Tensor, valid: Tensor, levels: tuple[int, ...]) -> tuple[Tensor, ...]:
    """Fine bins `[B, P]`, the maps detached `[2, B * P]` (pred, target), median positions
    `[2, B, C]` and counts `[B, C]` of the contexts of all levels."""
    n_fine = max(levels)
    if any(n_fine % s for s in levels):
        raise ValueError(f"levels {levels} must all divide the finest level {n_fine}")
    fine = fine_bins(t, valid, n_fine)
    maps = torch.stack([p.detach().flatten(1), t.detach().flatten(1)])
    return (fine, maps.view(2, -1), *median_index(maps, fine, n_fine, levels))


def _normalized_levels(
    p: Tensor, t: Tensor, valid: Tensor, levels: tuple[int, ...], eps: float
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield, per level, the normalized maps `(N(p), N(t))`, each `[B, P]`; 0 on invalid pixels.

    Both maps share one median selection and, per level, one context id map; each is normalized
    on its own (`ContextNormalize`: no autograd graph, and no backward work for a map that does
    not require a gradient, as labels do not).
    """
    fine, _, index, count = _select(p, t, valid, levels)
    maps, v, offset = (p.flatten(1), t.flatten(1)), valid.flatten(1), 0
    for s in levels:
        cols = slice(offset, offset + s)
        if s == 1:
            out = [
                _global_map(x, index[m, :, cols], count[:, cols], v, eps)
                for m, x in enumerate(maps)
            ]
        else:
            contexts = _level_contexts(fine, max(levels), s)
            out = []
            for m, x in enumerate(maps):
                pos, n = _level_tables(index[m, :, cols], count[:, cols], s)
                normed = ContextNormalize.apply(x.flatten(), contexts, pos, n.to(x.dtype), eps)
                out.append(normed.view_as(x))
        yield out[0], out[1]
        offset += s


def _level_l1(p: Tensor, t: Tensor, valid: Tensor, levels: tuple[int, ...], eps: float) -> Tensor:
    """Per-image sums `[B]` over the levels of `sum_i |N(p)_i - N(t)_i|` (`ContextL1` per level)."""
    fine, both, index, count = _select(p, t, valid, levels)
    maps, v, offset = (p.flatten(1), t.flatten(1)), valid.flatten(1), 0
    total = p.new_zeros(p.shape[0])
    for s in levels:
        cols = slice(offset, offset + s)
        if s == 1:
            norm_p, norm_t = (
                _global_map(x, index[m, :, cols], count[:, cols], v, eps)
                for m, x in enumerate(maps)
            )
            total = total + (norm_p - norm_t).abs().sum(1)
        else:
            tables = [_level_tables(index[m, :, cols], count[:, cols], s) for m in range(2)]
            pos = torch.stack([tables[0][0], tables[1][0]])
            n = tables[0][1].to(p.dtype)
            total = total + ContextL1.apply(
                maps[0], maps[1], both, _level_contexts(fine, max(levels), s), pos, n, eps
            )
        offset += s
    return total


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
        total = _level_l1(p, t, valid, levels, eps) / len(levels)
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
