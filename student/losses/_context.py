"""Median/MAD normalization of many contexts at once, with a hand-written backward.

A context is a set of pixels of flat maps `x [M, N]` (pred and target share them) given by a
context id per pixel (G ids). Per context: `med` = the element at `median_pos` (found by
`_select.median_index`), `mad = sum |x - med| / count`, `N(x) = (x - med) / (mad + eps)`.

`Contexts` turns the ids into lane ids `id * L + (pixel % L)`: a per-context sum is one
`scatter_add_` into `G * L` cells followed by a sum over the L lanes, and a per-pixel look-up is one
`gather` of a table repeated L times (for all M maps at once). Neighbouring pixels mostly share a
context, so without lanes every add waits on the previous one to the same cell (~2.5x slower).

Autograd through `gather` / `scatter_add` would scatter from every pixel again in the backward,
so the gradient is written out: with `a = 1 / (mad + eps)`, `d = x - med` and upstream `g`,
`dL/dd_j = a * g_j - sgn(d_j) * a² * sum_c(g * d) / count`, and the median element also receives
minus the context's sum of that (it is subtracted from every member). `sgn(0) = 0` matches autograd
through `abs`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

LANES = 8


class Contexts(NamedTuple):
    """Lane ids `[N]` (int64) of G contexts over N pixels, spread over `lanes` lanes."""

    ids: Tensor
    groups: int
    lanes: int

    @classmethod
    def from_columns(cls, col: Tensor, width: int) -> Contexts:
        """Contexts `b * width + col[b, i]` of columns `[B, P]` (any integer dtype) in `[0, width)`.

        Lanes: the largest divisor of P up to LANES; pixel i of an image is in lane `i % lanes`.
        """
        batch, npix = col.shape
        lanes = math.gcd(npix, LANES)
        ids = col.to(torch.int64).mul_(lanes)  # (a broadcast add with promotion is ~6x slower)
        ids += torch.arange(0, batch * width * lanes, width * lanes, device=col.device)[:, None]
        ids += torch.arange(npix, device=col.device) % lanes
        return cls(ids.flatten(), batch * width, lanes)

    def sums(self, values: Tensor) -> Tensor:
        """Sums per context `[M, G]` of the rows of `values [M, N]`."""
        rows = values.shape[0]
        cells = values.new_zeros(rows, self.groups * self.lanes)
        cells.scatter_add_(1, self.ids.expand(rows, -1), values)
        return cells.view(rows, self.groups, self.lanes).sum(2)

    def spread(self, table: Tensor, out: Tensor | None = None) -> Tensor:
        """Per-pixel values `[M, N]` of per-context tables `[M, G]` (into `out` if given)."""
        table = table.repeat_interleave(self.lanes, dim=1)
        return torch.gather(table, 1, self.ids.expand(table.shape[0], -1), out=out)


def _normalize(x: Tensor, contexts: Contexts, median_pos: Tensor, count: Tensor, eps: float):
    """`(d, scale, inv)` of maps `x [M, N]`: `N(x) = d * scale`, scale = `inv` spread to pixels.

    median_pos `[M, G]`: position of each context's median in its row of x (-1: empty, median 0).
    """
    med = x.gather(1, median_pos.clamp(min=0)).masked_fill_(median_pos < 0, 0)
    d = contexts.spread(med)
    d = torch.sub(x, d, out=d)
    work = d.abs()
    inv = (contexts.sums(work) / count + eps).reciprocal_()
    return d, contexts.spread(inv, out=work), inv


def _input_grad(grad, d, scale, inv, count, median_pos, contexts: Contexts) -> Tensor:
    """Gradient `[1, N]` of one map from the gradient `grad [1, N]` of its normalized map."""
    work = grad * d
    r = contexts.spread(inv * inv * contexts.sums(work) / count)
    r.mul_(torch.sgn(d, out=work))
    gx = torch.mul(grad, scale).sub_(r)
    total = contexts.sums(gx)[0]
    found = median_pos[0] >= 0
    gx[0].index_add_(0, median_pos[0][found], total[found], alpha=-1)
    return gx


class ContextNormalize(torch.autograd.Function):
    """`N(x)` of every context: `apply(x, contexts, median_pos, count, eps)` → `[N]`.

    x: flat `[N]` float map; contexts: `Contexts` of its pixels; median_pos: `[G]` int64 flat
    position of each context's median in x (-1 for an empty context); count: `[G]` float context
    sizes, clamped to ≥ 1. Differentiable in x only.
    """

    @staticmethod
    def forward(ctx, x, contexts, median_pos, count, eps):  # noqa: D102
        d, scale, inv = _normalize(x[None], contexts, median_pos[None], count, eps)
        if not ctx.needs_input_grad[0]:
            return d.mul_(scale)[0]
        ctx.contexts = contexts
        ctx.save_for_backward(d, scale, median_pos[None], inv, count)
        return (d * scale)[0]

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        d, scale, median_pos, inv, count = ctx.saved_tensors
        gx = _input_grad(grad[None], d, scale, inv, count, median_pos, ctx.contexts)
        return gx[0], None, None, None, None


class ContextL1(torch.autograd.Function):
    """Per-image sums `[B]` of `|N(p) - N(t)|` over one level's contexts.

    `apply(p, t, both, contexts, pos, count, eps)`: p, t `[B, P]` (autograd inputs); both: their
    values stacked `[2, B * P]` (detached), normalized together (one look-up, one sum for both);
    pos: `[2, G]` median positions in the flat p and t; count: `[G]` as for `ContextNormalize`.
    """

    @staticmethod
    def forward(ctx, p, t, both, contexts, median_pos, count, eps):  # noqa: D102
        d, scale, inv = _normalize(both, contexts, median_pos, count, eps)
        normed_t = d[1] * scale[1] if ctx.needs_input_grad[1] else d[1].mul_(scale[1])
        diff = torch.mul(d[0], scale[0]).sub_(normed_t)
        ctx.contexts, ctx.shape = contexts, p.shape
        ctx.save_for_backward(d, scale, diff, median_pos, inv, count)
        return torch.linalg.vector_norm(diff.view(p.shape), 1, dim=1)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        d, scale, diff, median_pos, inv, count = ctx.saved_tensors
        g = torch.sgn(diff).view(ctx.shape).mul_(grad[:, None]).view(1, -1)
        grads = []
        for m in range(2):
            if not ctx.needs_input_grad[m]:
                grads.append(None)
                continue
            rows = slice(m, m + 1)
            gm = _input_grad(
                g if m == 0 else -g,
                d[rows],
                scale[rows],
                inv[rows],
                count,
                median_pos[rows],
                ctx.contexts,
            )
            grads.append(gm.view(ctx.shape))
        return grads[0], grads[1], None, None, None, None, None
