"""Scale-invariant boundary F1 (Depth Pro, Bochkovskii et al., 2024): how much of the ground
truth's fine detail a prediction keeps, where AbsRel and δ1 hardly move.

Both depth maps become inverse depth `v = 1 / max(d, 1e-6)`. For a threshold t and each of the
four neighbour directions (right, left, below, above), the pair of pixel i and its neighbour j is
an edge when `v_i / v_j > t`: i is nearer than j by more than the factor t. Per direction, recall
= |edge in both maps| / |edge in the ground truth| and precision = |edge in both| / |edge in the
prediction| (each denominator at least 1); recall and precision are the means over the four
directions and F1 = 2PR / (P + R), 0 when P + R = 0. The score is `Σ w_t · F1_t` over
`t = linspace(t_min, t_max, n)` with `w_t = t / Σ t`.

A direction without ground-truth edges counts as 0 in the four-direction means: a single
straight step scores 0.25 even when predicted exactly. That is the published definition, which
other papers quote, so it is kept. Only ratios matter, so any positive scaling of the prediction
scores the same; a shift in inverse depth does not (run it after the protocol's alignment).

With `mask`, a pair counts only where both of its pixels are valid; with `mask=None` the value is
Depth Pro's exactly (same dtype rules: the maps keep their floating dtype).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from pipeline.toolkit.cpus import usable_cpus

DEPTH_EPS = 1e-6
EDGE_FIGURE_THRESHOLD = 1.15
"""The threshold at which `edge_maps` draws edges for a figure (the middle of the default range)."""

# (i, j) index pairs of the four directions: right, left, below, above.
_PAIRS = (
    ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
    ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
    ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
    ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
)


def inverse_depth(depth: np.ndarray) -> np.ndarray:
    """`1 / max(depth, 1e-6)` in the map's own floating dtype (float64 for integer input)."""
    depth = np.asarray(depth)
    if not np.issubdtype(depth.dtype, np.floating):
        depth = depth.astype(np.float64)
    return 1.0 / depth.clip(min=DEPTH_EPS)


def thresholds_and_weights(t_min: float, t_max: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`t = linspace(t_min, t_max, n)` and `w = t / Σ t`."""
    if n < 1 or not 1.0 < t_min <= t_max:
        raise ValueError(f"need n ≥ 1 and 1 < t_min ≤ t_max, got n={n}, t=[{t_min}, {t_max}]")
    t = np.linspace(t_min, t_max, n)
    return t, t / t.sum()


def _pairs_valid(valid: np.ndarray | None, pair: tuple) -> np.ndarray | None:
    """Where both pixels of each pair of one direction are valid (None: every pair)."""
    (ai, aj), (bi, bj) = pair
    return None if valid is None else valid[ai, aj] & valid[bi, bj]


def _edge_values(
    inv: np.ndarray, pair: tuple, floor: float, pairs_valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The ratios `v_i / v_j` of one direction, and where they exceed `floor` (valid pairs)."""
    (ai, aj), (bi, bj) = pair
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = inv[ai, aj] / inv[bi, bj]
    above = ratio > floor
    if pairs_valid is not None:
        above &= pairs_valid
    return ratio, above


def _direction_counts(
    pred_inv: np.ndarray,
    gt_inv: np.ndarray,
    pair: tuple,
    thresholds: np.ndarray,
    valid: np.ndarray | None,
) -> np.ndarray:
    """`[3, n]` counts for one direction: edges in both maps, in the ground truth, in the
    prediction, per threshold. Only pairs above the smallest threshold are looked at again."""
    pairs_valid = _pairs_valid(valid, pair)
    rp, p_above = _edge_values(pred_inv, pair, thresholds[0], pairs_valid)
    rg, g_above = _edge_values(gt_inv, pair, thresholds[0], pairs_valid)
    both = p_above & g_above
    values = (np.minimum(rp[both], rg[both]), rg[g_above], rp[p_above])  # both > t <=> min > t
    return np.array([[np.count_nonzero(v > t) for t in thresholds] for v in values])


def _block_counts(pred, gt, valid, rows: slice, thresholds: np.ndarray) -> np.ndarray:
    """`[4, 3, n]` counts of the pairs owned by a block of rows: the horizontal pairs in its
    rows and the vertical pairs from each of its rows to the next (the block reads one row more)."""
    stop = min(rows.stop + 1, pred.shape[0])
    own = rows.stop - rows.start
    p, g = inverse_depth(pred[rows.start : stop]), inverse_depth(gt[rows.start : stop])
    v = None if valid is None else valid[rows.start : stop]
    h, w = (slice(0, own), slice(1, None)), (slice(0, own), slice(None, -1))
    down, up = (slice(1, None), slice(None)), (slice(None, -1), slice(None))
    pairs = ((h, w), (w, h), (down, up), (up, down))
    return np.stack([_direction_counts(p, g, pair, thresholds, v) for pair in pairs])


BLOCK_ROWS = 256
"""Rows per block: a block's temporaries stay in cache, and blocks run on all cores (numpy
releases the GIL in its loops), so a 24 MP map costs less than the protocol's own scoring."""


def boundary_counts(
    pred_depth: Any,
    gt_depth: Any,
    mask: Any | None = None,
    t_min: float = 1.05,
    t_max: float = 1.25,
    n: int = 10,
) -> np.ndarray:
    """`[4, 3, n]` edge counts (direction; both / ground truth / prediction; threshold)."""
    pred, gt = np.asarray(pred_depth), np.asarray(gt_depth)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(
            f"boundary F1 needs two 2-D maps of one shape, got {pred.shape} and {gt.shape}"
        )
    valid = None if mask is None else np.asarray(mask, dtype=bool)
    if valid is not None and valid.shape != gt.shape:
        raise ValueError(f"mask shape {valid.shape} differs from the maps' {gt.shape}")
    thresholds, _ = thresholds_and_weights(t_min, t_max, n)
    blocks = [slice(r, min(r + BLOCK_ROWS, gt.shape[0])) for r in range(0, gt.shape[0], BLOCK_ROWS)]
    if len(blocks) == 1:
        return _block_counts(pred, gt, valid, blocks[0], thresholds)
    with ThreadPoolExecutor(min(len(blocks), usable_cpus())) as pool:
        parts = pool.map(lambda rows: _block_counts(pred, gt, valid, rows, thresholds), blocks)
        return np.sum(list(parts), axis=0)


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-threshold F1 from `boundary_counts` (means over the four directions first)."""
    both, n_gt, n_pred = counts[:, 0], counts[:, 1], counts[:, 2]
    recall = (both / np.maximum(n_gt, 1)).mean(axis=0)
    precision = (both / np.maximum(n_pred, 1)).mean(axis=0)
    total = recall + precision
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 2 * (recall * precision) / total, 0.0)


def si_boundary_f1(
    pred_depth: Any,
    gt_depth: Any,
    mask: Any | None = None,
    t_min: float = 1.05,
    t_max: float = 1.25,
    n: int = 10,
) -> float:
    """Scale-invariant boundary F1 of a predicted depth map against ground-truth depth (see the
    module docstring); `mask`: valid pixels (a pair counts only where both are valid)."""
    counts = boundary_counts(pred_depth, gt_depth, mask, t_min, t_max, n)
    _, weights = thresholds_and_weights(t_min, t_max, n)
    return float(np.sum(f1_from_counts(counts) * weights))


def edge_maps(depth: Any, mask: Any | None = None, t: float = EDGE_FIGURE_THRESHOLD) -> np.ndarray:
    """A bool map of the pixels that are the near side of an edge at threshold `t` in any of
    the four directions (for figures): what the metric counts, drawn on the pixel grid."""
    inv = inverse_depth(depth)
    valid = None if mask is None else np.asarray(mask, dtype=bool)
    out = np.zeros(inv.shape, dtype=bool)
    for pair in _PAIRS:
        _, above = _edge_values(inv, pair, t, _pairs_valid(valid, pair))
        (ai, aj), _ = pair
        out[ai, aj] |= above
    return out
