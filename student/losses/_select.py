"""Exact lower medians of many pixel sets at once: histogram selection, no full sort, no loops.

The sets ("contexts") are given per row by a fine bin id; a coarser level S groups `n_fine // S`
adjacent fine bins (the value-range contexts nest: the S = 2 ranges are unions of S = 4 ranges).

1. One `bincount` of every valid pixel by (row, fine bin, value bin), where the value bins split
   the row's `[min, max]` into `bins_for(P)` equal parts (binning is monotone in the value, so
   ranks are exact). Coarse levels are sums of fine histograms; a cumulative sum gives the bin
   holding the median of each context and the rank left inside it.
2. The pixels in a selected bin (one table look-up) are the only candidates; while they are many,
   refine the same way inside each context's candidate range; contexts whose candidates all have
   one value are settled at once. The few left are sorted by (context, value).

The result is the element of rank `(n - 1) // 2` of each set, the lower median (what
`torch.median` returns), and the gradient reaches that element as it does for `torch.median`.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_BINS = 4096
PIXELS_PER_BIN = 16
SORT_LIMIT = 1 << 16
MAX_REFINE = 4


def bins_for(npix: int) -> int:
    """Histogram size for rows of `npix` pixels: a power of two, ~16 pixels a bin, 4..MAX_BINS."""
    return max(4, min(MAX_BINS, 1 << max(npix // PIXELS_PER_BIN, 1).bit_length()))


def _pick(hist: Tensor, rank: Tensor) -> tuple[Tensor, Tensor]:
    """For histograms `[G, nbins]` and ranks `[G]`: the bin holding that rank, rank left in it."""
    cum = hist.cumsum(-1)
    sel = torch.searchsorted(cum, (rank + 1)[:, None]).clamp(max=hist.shape[1] - 1)
    below = torch.where(sel > 0, cum.gather(1, (sel - 1).clamp(min=0)), 0)
    return sel[:, 0], rank - below[:, 0]


def _value_bins(x: Tensor, lo: Tensor, hi: Tensor, nbins: int) -> Tensor:
    """Bin in `[0, nbins)` (int32) of every `x` in `[lo, hi]` (broadcast), monotone in `x`.

    The scale `(nbins - 1/2) / (hi - lo)` is computed in float64 and capped to the dtype's range;
    `hi == lo` gives scale 0 (one bin). With x in `[lo, hi]`, rounding cannot leave the range; the
    clamp only guards `x - lo` overflowing to inf (values near the dtype's limits).
    """
    span = hi.double() - lo.double()
    scale = torch.where(span > 0, (nbins - 0.5) / span, 0.0).clamp(max=torch.finfo(x.dtype).max)
    return (x - lo).mul_(scale.to(x.dtype)).clamp_(0, nbins - 1).to(torch.int32)


def _cell_ids(x: Tensor, fine: Tensor, slots: int, nbins: int) -> Tensor:
    """Flat histogram cell `[M * B * P]` of every pixel: (map, image, fine slot, value bin).

    The value bins split each row's `[min, max]` over all its entries (invalid ones are 0 and sit
    in the dump slot: they may widen the range, which only makes the bins coarser).
    """
    maps, batch, _ = x.shape
    ids = _value_bins(x, x.amin(2, keepdim=True), x.amax(2, keepdim=True), nbins)
    rows = torch.arange(maps * batch, device=x.device, dtype=torch.int32).view(maps, batch, 1)
    ids += fine.to(torch.int32) * nbins
    ids += rows * (slots * nbins)
    return ids.flatten()


def _level_hists(hist: Tensor, n_fine: int, levels: tuple[int, ...]) -> Tensor:
    """Per-context histograms `[R, C, nbins]` from fine ones `[R, n_fine, nbins]`."""
    rows, _, nbins = hist.shape
    per_level = [hist.reshape(rows, s, n_fine // s, nbins).sum(2) for s in levels]
    return torch.cat(per_level, 1)


def _flag_table(
    sel: Tensor, slots: int, nbins: int, n_fine: int, levels: tuple[int, ...]
) -> Tensor:
    """Table (uint8) over histogram cells: bit l set where the cell is level l's pick."""
    rows = sel.shape[0]
    flags = torch.zeros(rows * slots * nbins, dtype=torch.uint8, device=sel.device)
    cells = torch.arange(rows, device=sel.device)[:, None] * slots
    cells = cells + torch.arange(n_fine, device=sel.device)
    offset = 0
    for bit, s in enumerate(levels):
        per_fine = sel[:, offset : offset + s].repeat_interleave(n_fine // s, dim=1)
        idx = (cells * nbins + per_fine).flatten()
        flags.index_put_((idx,), torch.full_like(idx, 1 << bit, dtype=torch.uint8), True)
        offset += s
    return flags


def _candidates(
    flags: Tensor, fine: Tensor, n_fine: int, levels: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Entries `(context id g = row * C + column, flat pixel index)` of the flagged pixels.

    flags: `[M * B * P]` bits per pixel; fine: `[B, P]`; rows are (map, image) pairs.
    """
    batch, npix = fine.shape
    pix = flags.nonzero()[:, 0]
    bits, row_c = flags[pix], pix // npix
    fine_c = fine.flatten()[pix % (batch * npix)]
    gids, pixs = [], []
    offset = 0
    for bit, s in enumerate(levels):
        hit = ((bits >> bit) & 1).bool()
        gids.append(row_c[hit] * sum(levels) + offset + fine_c[hit] // (n_fine // s))
        pixs.append(pix[hit])
        offset += s
    return torch.cat(gids), torch.cat(pixs)


def _settle_flat(
    vals: Tensor, gid: Tensor, pix: Tensor, answer: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Settle contexts whose candidates all share one value; return (kept entries, lo, hi)."""
    groups = answer.shape[0]
    inf = torch.tensor(float("inf"), dtype=vals.dtype, device=vals.device)
    lo = inf.expand(groups).scatter_reduce(0, gid, vals, "amin")
    hi = (-inf).expand(groups).scatter_reduce(0, gid, vals, "amax")
    settled = (lo == hi)[gid]
    answer.scatter_reduce_(0, gid[settled], pix[settled], "amin")
    return ~settled, lo, hi


def _refine(
    vals: Tensor, gid: Tensor, rank: Tensor, lo: Tensor, hi: Tensor
) -> tuple[Tensor, Tensor]:
    """One histogram pass inside each context's candidate range: (kept entries, rank left)."""
    groups, nbins = rank.shape[0], bins_for(gid.numel())
    bins = _value_bins(vals, lo[gid], hi[gid], nbins)
    hist = torch.bincount(gid * nbins + bins, minlength=groups * nbins).view(groups, nbins)
    sel, rank = _pick(hist, rank)
    return bins == sel[gid], rank


def _sort_pick(vals: Tensor, gid: Tensor, pix: Tensor, rank: Tensor, answer: Tensor) -> None:
    """Settle the remaining contexts by sorting their candidates by (context, value)."""
    if gid.numel() == 0:
        return
    order = torch.sort(vals, stable=True).indices
    order = order[torch.sort(gid[order], stable=True).indices]
    count = torch.bincount(gid, minlength=answer.shape[0])
    has = count > 0
    start = count.cumsum(0) - count
    answer[has] = pix[order[(start + rank)[has]]]


def _select_among(x_flat: Tensor, gid: Tensor, pix: Tensor, rank: Tensor, answer: Tensor) -> None:
    """Fill `answer[g]` with the flat index of the candidate of rank `rank[g]` of context g."""
    for _ in range(MAX_REFINE):
        vals = x_flat[pix]
        keep, lo, hi = _settle_flat(vals, gid, pix, answer)
        gid, pix, vals = gid[keep], pix[keep], vals[keep]
        if gid.numel() <= SORT_LIMIT:
            break
        keep, rank = _refine(vals, gid, rank, lo, hi)
        if bool(keep.all()):
            break
        gid, pix = gid[keep], pix[keep]
    _sort_pick(x_flat[pix], gid, pix, rank, answer)


@torch.no_grad()
def median_index(
    x: Tensor, fine: Tensor, n_fine: int, levels: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Position of the lower median of every context, and the context sizes.

    Returns a flat index `[M, B, C]` into `x[m]` (int64, -1 for an empty context) and counts
    `[B, C]` (int64). Arguments as `context_medians`.
    """
    maps, batch, npix = x.shape
    rows, n_ctx, slots = maps * batch, sum(levels), n_fine + 1
    nbins = bins_for(npix)
    if rows * slots * nbins >= 2**31 or len(levels) > 8:
        raise ValueError(f"x has too many rows ({rows}) or levels ({levels}) for one selection")
    xs = x.detach()
    xs = xs.float() if xs.element_size() < 4 else xs
    ids = _cell_ids(xs, fine, slots, nbins)
    hist = torch.bincount(ids, minlength=rows * slots * nbins).view(rows, slots, nbins)
    hist = _level_hists(hist[:, :n_fine], n_fine, levels)
    count = hist.sum(-1)
    rank = ((count - 1) // 2).clamp(min=0).flatten()
    sel, rank = _pick(hist.view(rows * n_ctx, nbins), rank)
    table = _flag_table(sel.view(rows, n_ctx), slots, nbins, n_fine, levels)
    gid, pix = _candidates(table.index_select(0, ids), fine, n_fine, levels)
    answer = torch.full((rows * n_ctx,), rows * npix, dtype=torch.int64, device=x.device)
    _select_among(xs.flatten(), gid, pix, rank, answer)
    answer = answer.view(maps, batch, n_ctx)
    in_map = answer - torch.arange(maps, device=x.device).view(maps, 1, 1) * (batch * npix)
    index = torch.where(answer < rows * npix, in_map, -1)
    return index, count.view(maps, batch, n_ctx)[0]


def gather_medians(values: Tensor, index: Tensor) -> Tensor:
    """Medians `[B, C]` of one map `[B, P]` from its `median_index` slice `[B, C]` (0 if empty).

    Differentiable like `torch.median`: the gradient reaches the median element.
    """
    found = index >= 0
    med = values.flatten()[torch.where(found, index, 0)]
    return torch.where(found, med, torch.zeros((), dtype=med.dtype, device=med.device))


def context_medians(
    x: Tensor, fine: Tensor, n_fine: int, levels: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Lower medians `[M, B, C]` and counts `[B, C]` (int64) of every context of every level.

    x: `[M, B, P]` float values of M maps (e.g. pred and target) that share the contexts, finite;
    fine: `[B, P]` integer (e.g. uint8) fine bin in `[0, n_fine]`; `n_fine` marks an invalid pixel.
    Columns: the contexts of `levels[0]`, then of `levels[1]`, ... (C = sum(levels)); level S
    groups `n_fine // S` adjacent fine bins. Empty contexts get median 0 and count 0.
    """
    index, count = median_index(x, fine, n_fine, levels)
    meds = [gather_medians(x[m], index[m]) for m in range(x.shape[0])]
    return torch.stack(meds), count
