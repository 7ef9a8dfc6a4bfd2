"""The protocol's `score` on torch tensors, for scoring on the GPU next to the model.

Same steps and numbers as `evaluation.protocol.score` (valid range, crop, extra mask,
least-squares fit in the prediction's space in float64 by the same `--alignment`, clipping,
metric sums); the tests check the two agree. On a GPU a 24 MP ETH3D sample costs milliseconds
instead of half a second of CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from evaluation.alignment import DEFAULT_ALIGNMENT, solve
from evaluation.boundary import si_boundary_f1
from evaluation.protocol import (
    DATASETS,
    DEPTH_FLOOR,
    DISPARITY_FLOOR,
    aligned_map,
    check_inputs,
    depth_range,
    metrics_from_sums,
    scoring_mask,
)
from labelgen.teachers.base import resize


def _metric_sums(est: Tensor, ref: Tensor) -> list[float]:
    ratio = torch.maximum(est / ref, ref / est)
    diff = est - ref
    return [
        float(est.numel()),
        float((diff.abs() / ref).sum()),
        float((ratio < 1.25).sum()),
        float((ratio < 1.25**2).sum()),
        float((ratio < 1.25**3).sum()),
        float(diff @ diff),
    ]


def score_tensor(
    pred: Tensor,
    gt: Tensor,
    dataset: str,
    pred_space: str,
    valid_mask: Tensor | None = None,
    score_space: str = "depth",
    alignment: str = DEFAULT_ALIGNMENT,
) -> dict[str, Any]:
    """`evaluation.protocol.score` for `[H, W]` tensors on any device (same result dict)."""
    import numpy as np

    rules = DATASETS.get(dataset)
    check_inputs(pred, gt, pred_space, score_space, alignment)
    mask = scoring_mask(gt, rules, valid_mask)
    if not bool(mask.any()):
        return {"status": "empty_mask", "valid_pixels": 0, "nonfinite_pixels": 0}
    p, g = pred[mask].double(), gt[mask].double()
    finite = torch.isfinite(p)
    if pred_space == "depth":
        fp, ft = p[finite], g[finite]
    else:
        use = finite & (g > 0) & (p > 0)
        fp, ft = p[use], 1.0 / g[use]
    p = torch.where(finite, p, 0.0)
    sums = (fp.numel(), float(fp.sum()), float(ft.sum()), float(fp @ fp), float(fp @ ft))
    a, b, degenerate = solve(alignment, *sums)
    est = a * p + b
    if pred_space != "depth":
        est = 1.0 / est.clamp_min(DISPARITY_FLOOR)
    est = est.clamp(*rules.depth_clip()).clamp_min(DEPTH_FLOOR)
    lo, hi = depth_range(rules, float(g.max()))
    worst = torch.where(g - lo > hi - g, lo, hi).clamp_min(DEPTH_FLOOR)  # protocol.worst_depth
    est = torch.where(finite, est, worst)
    if score_space == "disparity":
        est, g = 1.0 / est, 1.0 / g
    result = metrics_from_sums(np.array(_metric_sums(est, g)))
    if rules.sharp_boundaries:  # on the whole aligned map, as `protocol.score` (numpy, host)
        gt_max = float(gt[mask].max())
        host = pred.cpu().numpy()
        aligned = aligned_map(host, gt.cpu().numpy(), a, b, rules, pred_space, gt_max)
        result["boundary_f1"] = si_boundary_f1(aligned, gt.cpu().numpy(), mask.cpu().numpy())
    status = "degenerate_fit" if degenerate else "ok"
    return {
        **result,
        "status": status,
        "valid_pixels": int(mask.sum()),
        "nonfinite_pixels": int((~finite).sum()),
    }


def resize_tensor(pred: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of a 2-D map (antialiased when shrinking): the teachers' `resize`."""
    return resize(pred.float()[None, None], size)[0, 0]
