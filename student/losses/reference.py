"""Straightforward per-context reference of the normalized L1 loss (tests and benchmark only).

Loops over images and contexts; masked medians via `torch.median` on the selected pixels (the lower
median for even counts, the convention of `student.losses.normalize`). Slow on purpose: it is the
executable specification the vectorized `normalized_l1` is checked against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import EPS, levels_for, prepare, range_edges


def _normalize(x: Tensor, eps: float) -> Tensor:
    """`(x - median) / (mean |x - median| + eps)` of a 1-D set of pixels."""
    med = torch.median(x)
    mad = (x - med).abs().mean()
    return (x - med) / (mad + eps)


def _context_members(t: Tensor, edges: Tensor, k: int, s: int) -> Tensor:
    """Bool selector of range k of s: `edge_k ≤ t < edge_{k+1}`, the top range closed."""
    sel = torch.ones_like(t, dtype=torch.bool)
    if k > 0:
        sel &= t >= edges[k - 1]
    if k < s - 1:
        sel &= t < edges[k]
    return sel


def _image_loss(p: Tensor, t: Tensor, edges: dict[int, Tensor], eps: float) -> Tensor:
    """Mean over pixels of the mean over the pixel's contexts of `|N_c(p) - N_c(t)|` (1-D p, t)."""
    total = torch.zeros_like(p)
    count = torch.zeros_like(p)
    for s, e in edges.items():
        for k in range(s):
            sel = _context_members(t, e, k, s)
            if not bool(sel.any()):
                continue
            diff = (_normalize(p[sel], eps) - _normalize(t[sel], eps)).abs()
            total = total.index_put((sel,), total[sel] + diff)
            count = count.index_put((sel,), count[sel] + 1)
    return (total / count).mean()


def reference_per_image(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, norm: str = "global", eps: float = EPS
) -> tuple[Tensor, Tensor]:
    """Per-image losses `[B]` and `has_pixels [B]` (bool), by explicit loops over contexts."""
    levels = levels_for(norm)
    p, t, valid = prepare(pred, target, mask)
    losses = []
    for b in range(p.shape[0]):
        v = valid[b]
        if not bool(v.any()):
            losses.append(p[b].sum() * 0)
            continue
        pb, tb = p[b][v], t[b][v]
        if not levels:
            losses.append((pb - tb).abs().mean())
            continue
        edges = {s: range_edges(t[b : b + 1], v[None], s)[0] for s in levels}
        losses.append(_image_loss(pb, tb, edges, eps))
    return torch.stack(losses), valid.flatten(1).any(1)


def reference_normalized_l1(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, norm: str = "global", eps: float = EPS
) -> Tensor:
    """Reference of `student.losses.normalized_l1`: mean over images that have a valid pixel."""
    losses, has = reference_per_image(pred, target, mask, norm, eps)
    return losses.sum() / has.sum().clamp(min=1)
