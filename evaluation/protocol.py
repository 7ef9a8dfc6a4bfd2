"""The zero-shot affine-invariant depth protocol (Marigold's), as data and pure functions.

`score(pred, gt, dataset, pred_space)` scores one sample: the dataset's valid range and crop,
least-squares scale and shift in the prediction's space (disparity models are fitted in
disparity, depth models in depth), clipping, then AbsRel, δ1-3 and RMSE in depth. A dataset's
score is the mean of its per-sample scores. See `reference/eval-protocol.md` for the sources.
`alignment='scale'` fits a scale only, `'none'` takes a depth prediction as metric depth
(`evaluation.alignment`).

A benchmark's rules (`DatasetRules`: range, crop, clip, ...) live on its loader class in
`evaluation.datasets`; `DATASETS.get(name)` looks them up there.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from typing import Any

import numpy as np

from evaluation.alignment import (
    DEFAULT_ALIGNMENT,
    alignment_text,
    check_alignment,
    solve,
    solve_scale_shift,
)
from evaluation.boundary import si_boundary_f1
from evaluation.datasets.base import DATASETS, DatasetRules
from evaluation.metrics import DETAIL_METRICS, METRICS

DISPARITY_FLOOR = 1e-3  # aligned disparity is clipped here before inversion
DEPTH_FLOOR = 1e-6


def scoring_mask(gt: Any, rules: DatasetRules, extra: Any | None) -> Any:
    """Pixels scored: GT finite and > 0, in the strict valid range, inside the crop, and in
    `extra`. Works on numpy arrays and torch tensors alike (operators and slicing only)."""
    mask = (gt > 0) & (gt < float("inf"))  # also False for NaN
    if not rules.range_from_mask_only:
        mask &= (gt > rules.min_depth) & (gt < rules.max_depth)
    if extra is not None:
        mask &= extra != 0
    if rules.eval_crop is not None:
        top, bottom, left, right = rules.eval_crop
        mask[:top] = False
        mask[bottom:] = False
        mask[:, :left] = False
        mask[:, right:] = False
    return mask


def fit_scale_shift(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least squares `min_{a,b} sum (a·pred + b − target)²` by the 2×2 normal equations;
    a singular system gives (1, 0) with a warning, never NaN."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    a, b, degenerate = solve_scale_shift(p.size, p.sum(), t.sum(), p @ p, p @ t)  # BLAS dots
    if degenerate:
        warnings.warn(
            "degenerate least-squares fit: scale 1, shift 0", RuntimeWarning, stacklevel=2
        )
    return a, b


PRED_SPACES = ("disparity", "depth")
SCORE_SPACES = ("depth", "disparity")


def fit(
    pred: np.ndarray, gt: np.ndarray, pred_space: str, alignment: str = DEFAULT_ALIGNMENT
) -> tuple[float, float, bool]:
    """Scale, shift and whether the fit was degenerate, for 1-D `pred` and `gt` (> 0, finite).

    Disparity predictions are fitted to 1/GT on pixels with pred > 0; depth predictions to GT.
    `alignment` 'scale' fits no shift, 'none' gives (1, 0).
    """
    p, t = _fit_pixels(np.asarray(pred, np.float64), np.asarray(gt, np.float64), pred_space)
    return solve(alignment, p.size, p.sum(), t.sum(), p @ p, p @ t)


def apply_fit(
    pred: np.ndarray, a: float, b: float, rules: DatasetRules, pred_space: str
) -> np.ndarray:
    """Aligned depth of `pred` (any shape): disparity is clipped at 1e-3 and inverted, then the
    depth is clipped to the dataset's range and to ≥ 1e-6."""
    if pred_space == "depth":
        depth = a * pred.astype(np.float64) + b
    else:
        depth = 1.0 / np.maximum(a * pred.astype(np.float64) + b, DISPARITY_FLOOR)
    lo, hi = rules.depth_clip()
    return np.maximum(np.clip(depth, lo, hi), DEPTH_FLOOR)


def depth_range(rules: DatasetRules, gt_max: float) -> tuple[float, float]:
    """The depth clip of `rules` with an open upper end (ETH3D, Middlebury) closed at the image's
    largest scored ground truth `gt_max`, so that a worst case is always finite."""
    lo, hi = rules.depth_clip()
    return lo, hi if hi < float("inf") else max(float(gt_max), lo)


def worst_depth(gt: np.ndarray, rules: DatasetRules, gt_max: float) -> np.ndarray:
    """What a non-finite predicted pixel is scored as: the end of `depth_range` farther from the
    ground truth (the largest error an aligned prediction can have there, finite). Such pixels
    stay in the scored set, so NaN or inf outputs cost accuracy instead of being dropped."""
    lo, hi = depth_range(rules, gt_max)
    with np.errstate(invalid="ignore"):  # unscored NaN/inf ground truth (figures) is harmless
        return np.maximum(np.where(gt - lo > hi - gt, lo, hi), DEPTH_FLOOR)


def check_spaces(pred_space: str, score_space: str) -> None:
    """Known spaces, and disparity scoring only of disparity predictions."""
    if pred_space not in PRED_SPACES or score_space not in SCORE_SPACES:
        raise ValueError(
            f"pred_space must be one of {PRED_SPACES} (got {pred_space!r}), score_space one of "
            f"{SCORE_SPACES} (got {score_space!r})"
        )
    if score_space == "disparity" and pred_space != "disparity":
        raise ValueError("score_space='disparity' needs a disparity prediction")


def check_inputs(
    pred: Any, gt: Any, pred_space: str, score_space: str, alignment: str = DEFAULT_ALIGNMENT
) -> None:
    """The argument checks of `score` (numpy) and `device_score.score_tensor` (torch)."""
    check_spaces(pred_space, score_space)
    check_alignment(alignment, pred_space)
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(
            f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape"
        )


def align(
    pred: np.ndarray,
    gt: np.ndarray,
    rules: DatasetRules,
    pred_space: str,
    alignment: str = DEFAULT_ALIGNMENT,
) -> tuple[np.ndarray, bool]:
    """Aligned depth of the scored pixels (1-D `pred`, `gt`) and whether the fit was degenerate.

    Disparity predictions are fitted to 1/GT on pixels with GT > 0 and pred > 0 and pixels left
    out of the fit are still scored; depth predictions are fitted to GT (see `fit`, `apply_fit`).
    """
    a, b, degenerate = fit(pred, gt, pred_space, alignment)
    return apply_fit(pred, a, b, rules, pred_space), degenerate


def metric_sums(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`[n, Σ|e−r|/r, #δ1, #δ2, #δ3, Σ(e−r)²]` of estimates against references (1-D, > 0)."""
    ratio = np.maximum(est / ref, ref / est)
    diff = est - ref
    return np.array(
        [
            est.size,
            np.sum(np.abs(diff) / ref),
            np.count_nonzero(ratio < 1.25),
            np.count_nonzero(ratio < 1.25**2),
            np.count_nonzero(ratio < 1.25**3),
            diff @ diff,
        ],
        dtype=np.float64,
    )


def metrics_from_sums(sums: np.ndarray) -> dict[str, float]:
    n = sums[0]
    return {
        "abs_rel": float(sums[1] / n),
        "delta1": float(sums[2] / n),
        "delta2": float(sums[3] / n),
        "delta3": float(sums[4] / n),
        "rmse": float(np.sqrt(sums[5] / n)),
    }


def metrics(est: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """AbsRel, δ1-3 (strict `<`) and RMSE of estimates against references (1-D, > 0)."""
    return metrics_from_sums(metric_sums(est, ref))


BLOCK = 1 << 18
"""Pixels per block of `score`: its float64 temporaries stay in cache (4× faster on 24 MP)."""


def _blocks(mask: np.ndarray, pred: np.ndarray, gt: np.ndarray):
    """(pred, gt) in float64 of the scored pixels, block by block in row-major order."""
    m, p, g = mask.ravel(), pred.ravel(), gt.ravel()
    for start in range(0, m.size, BLOCK):
        keep = m[start : start + BLOCK]
        if keep.any():
            yield (
                p[start : start + BLOCK][keep].astype(np.float64),
                g[start : start + BLOCK][keep].astype(np.float64),
            )


def _fit_pixels(p: np.ndarray, g: np.ndarray, pred_space: str) -> tuple[np.ndarray, np.ndarray]:
    """The pixels that enter the fit and their target (1/GT with pred > 0 for disparity)."""
    if pred_space == "depth":
        return p, g
    use = (g > 0) & (p > 0)
    return (p, 1.0 / g) if use.all() else (p[use], 1.0 / g[use])


def score(
    pred: np.ndarray,
    gt: np.ndarray,
    dataset: str,
    pred_space: str,
    valid_mask: np.ndarray | None = None,
    score_space: str = "depth",
    alignment: str = DEFAULT_ALIGNMENT,
) -> dict[str, Any]:
    """Score one sample. `pred`, `gt`: `[H, W]`, `gt` metric depth as the loader yields it.

    Returns the metrics (fractions), `status`: 'ok', 'degenerate_fit' (scored with scale 1,
    shift 0) or 'empty_mask' (no metrics; counted by `summarize`, never NaN), and
    `nonfinite_pixels`: scored pixels where the prediction is NaN or ±inf. Those are left out of
    the fit and scored as `worst_depth`, never dropped from the scored set.
    `score_space='disparity'` scores the aligned disparity against 1/GT instead (the Depth
    Anything convention; only for disparity predictions). Same numbers as `align` + `metrics`
    on the masked pixels, computed in two streaming passes over cache-sized blocks.
    `alignment` (`evaluation.alignment`): 'scale-shift' (default), 'scale' or 'none'.
    """
    rules = DATASETS.get(dataset)
    check_inputs(pred, gt, pred_space, score_space, alignment)
    mask = scoring_mask(gt, rules, valid_mask)
    if not mask.any():
        return {"status": "empty_mask", "valid_pixels": 0, "nonfinite_pixels": 0}
    fit_sums, gt_max = np.zeros(5), 0.0
    for p, g in _blocks(mask, pred, gt):
        gt_max = max(gt_max, float(g.max()))
        finite = np.isfinite(p)
        if not finite.all():
            p, g = p[finite], g[finite]
        fp, ft = _fit_pixels(p, g, pred_space)
        fit_sums += (fp.size, fp.sum(), ft.sum(), fp @ fp, fp @ ft)
    a, b, degenerate = solve(alignment, *fit_sums)
    sums, nonfinite = np.zeros(6), 0
    for p, g in _blocks(mask, pred, gt):
        finite = np.isfinite(p)
        if finite.all():
            est = apply_fit(p, a, b, rules, pred_space)
        else:
            nonfinite += int(finite.size - np.count_nonzero(finite))
            est = apply_fit(np.where(finite, p, 0.0), a, b, rules, pred_space)
            est = np.where(finite, est, worst_depth(g, rules, gt_max))
        sums += (
            metric_sums(1.0 / est, 1.0 / g) if score_space == "disparity" else metric_sums(est, g)
        )
    status = "degenerate_fit" if degenerate else "ok"
    detail = {}
    if rules.sharp_boundaries:
        aligned = aligned_map(pred, gt, a, b, rules, pred_space, gt_max)
        detail["boundary_f1"] = si_boundary_f1(aligned, gt, mask)
    return {
        **metrics_from_sums(sums),
        **detail,
        "status": status,
        "valid_pixels": int(sums[0]),
        "nonfinite_pixels": nonfinite,
    }


def aligned_map(
    pred: np.ndarray,
    gt: np.ndarray,
    a: float,
    b: float,
    rules: DatasetRules,
    pred_space: str,
    gt_max: float,
) -> np.ndarray:
    """The fit `(a, b)` applied to every pixel of `pred` (aligned, clipped depth; non-finite
    predictions at `worst_depth`): what boundary F1 and the figures see. float32: edges are
    ratios of 1.05 and more, far above its rounding, and the map is a whole image (24 MP)."""
    p = np.asarray(pred, dtype=np.float32)
    finite = np.isfinite(p)
    whole = bool(finite.all())
    est = a * (p if whole else np.where(finite, p, 0)) + b
    if pred_space != "depth":
        est = 1.0 / np.maximum(est, np.float32(DISPARITY_FLOOR))
    lo, hi = rules.depth_clip()
    est = np.maximum(np.clip(est, lo, hi), np.float32(DEPTH_FLOOR)).astype(np.float32, copy=False)
    return est if whole else np.where(finite, est, worst_depth(gt, rules, gt_max))


def aligned_depth(
    pred: np.ndarray,
    gt: np.ndarray,
    dataset: str,
    pred_space: str,
    valid_mask: np.ndarray | None = None,
    alignment: str = DEFAULT_ALIGNMENT,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole prediction aligned as `score` aligns it (fit on the scored pixels, applied to
    every pixel), and the scored mask; for figures. Degenerate fits give scale 1, shift 0."""
    rules = DATASETS.get(dataset)
    mask = scoring_mask(gt, rules, valid_mask)
    fitted = mask & np.isfinite(pred)
    a, b = 1.0, 0.0
    gt_max = float(gt[mask].max()) if mask.any() else 0.0
    if fitted.any():
        a, b, _ = fit(pred[fitted], gt[fitted].astype(np.float64), pred_space, alignment)
    return aligned_map(pred, gt, a, b, rules, pred_space, gt_max), mask


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Dataset score: the mean of per-sample metrics over scored samples, plus counts."""
    scored = [s for s in samples if s.get("status") != "empty_mask"]
    out: dict[str, Any] = {
        "samples": len(samples),
        "scored": len(scored),
        "empty_mask": len(samples) - len(scored),
        "degenerate_fit": sum(s.get("status") == "degenerate_fit" for s in samples),
        "nonfinite_pred": sum(bool(s.get("nonfinite_pixels")) for s in samples),
    }
    for name in METRICS:
        out[name] = float(np.mean([s[name] for s in scored])) if scored else None
    for name in DETAIL_METRICS:
        values = [s[name] for s in scored if s.get(name) is not None]
        if values:
            out[name] = float(np.mean(values))
    return out


def protocol_description(
    dataset: str, pred_space: str, score_space: str = "depth", alignment: str = DEFAULT_ALIGNMENT
) -> dict:
    """What a result records about how it was computed (`alignment_mode`: the `--alignment`)."""
    return {
        "dataset": asdict(DATASETS.get(dataset)),
        "pred_space": pred_space,
        "alignment": alignment_text(alignment, pred_space),
        "alignment_mode": alignment,
        "score_space": score_space,
        "disparity_floor": DISPARITY_FLOOR,
        "depth_floor": DEPTH_FLOOR,
        "per_dataset_score": "mean of per-sample metrics",
        **({"marigold_eth3d_quirk": ETH3D_QUIRK} if dataset == "eth3d" else {}),
    }


ETH3D_QUIRK = (
    "not reproduced: the fit and the scores use the full-resolution ground truth (Marigold fits "
    "ETH3D at max_resolution=1024 through an upsampler that shrinks only the width)"
)
