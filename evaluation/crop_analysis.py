"""The paper's Figure 2: does aligning globally hurt the accuracy of a local region?

For the central crop of size (h/2, w/2), two alignments of the same prediction:
- global: least squares on every scored pixel of the image, then crop;
- local: crop, then least squares on the crop's scored pixels only.
Both are scored on the crop's scored pixels with the dataset's rules. A lower local AbsRel means
global normalization degrades local accuracy (the premise of cross-context distillation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evaluation.datasets import BenchmarkDataset
from evaluation.predict import prediction_path
from evaluation.protocol import DATASETS, METRICS, apply_fit, fit, metrics, scoring_mask
from evaluation.score import load_prediction
from pipeline.toolkit.atomic import write_json
from pipeline.toolkit.progress import progress_bar


def central_box(h: int, w: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the centred crop of size (h // 2, w // 2)."""
    ch, cw = h // 2, w // 2
    top, left = (h - ch) // 2, (w - cw) // 2
    return top, top + ch, left, left + cw


def crop_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    dataset: str,
    pred_space: str,
    valid_mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """`{"global": metrics, "local": metrics, "status", "crop_pixels"}` for one sample.

    `status` is `empty_mask` when the crop has no scored pixel (no metrics then). Both alignments
    are compared on the same pixels: NaN or infinite prediction pixels are left out of both and
    counted in `nonfinite_pixels` (of the crop)."""
    rules = DATASETS.get(dataset)
    scored = scoring_mask(gt, rules, valid_mask)
    mask = scored & np.isfinite(pred)
    top, bottom, left, right = central_box(*gt.shape)
    in_crop = np.zeros_like(mask)
    in_crop[top:bottom, left:right] = True
    crop = mask & in_crop
    nonfinite = int((scored & in_crop).sum()) - int(crop.sum())
    if not crop.any():
        return {"status": "empty_mask", "crop_pixels": 0, "nonfinite_pixels": nonfinite}
    target = gt[crop].astype(np.float64)
    results: dict[str, Any] = {
        "status": "ok",
        "crop_pixels": int(crop.sum()),
        "nonfinite_pixels": nonfinite,
    }
    for name, fit_mask in (("global", mask), ("local", crop)):
        a, b, degenerate = fit(pred[fit_mask], gt[fit_mask].astype(np.float64), pred_space)
        depth = apply_fit(pred[crop], a, b, rules, pred_space)
        results[name] = metrics(depth, target)
        if degenerate:
            results["status"] = "degenerate_fit"
    return results


def summarize_crops(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean per-sample metrics of both alignments over the samples with a scored crop, and the
    fraction of samples where the local alignment has the lower AbsRel."""
    scored = [s for s in samples if s["status"] != "empty_mask"]
    out: dict[str, Any] = {"samples": len(samples), "scored": len(scored)}
    out["nonfinite_pixels"] = sum(s.get("nonfinite_pixels", 0) for s in samples)
    for name in ("global", "local"):
        out[name] = {
            m: (float(np.mean([s[name][m] for s in scored])) if scored else None) for m in METRICS
        }
    wins = [s["local"]["abs_rel"] < s["global"]["abs_rel"] for s in scored]
    out["local_better_fraction"] = float(np.mean(wins)) if wins else None
    return out


def analyse_crops(
    out: Path, datasets: list[BenchmarkDataset], pred_space: str, progress: bool = True
) -> dict[str, Any]:
    """Global vs local alignment on the central crop for every sample of `datasets`, from the
    prediction files in `out` (see `evaluation.predict`); writes `out/crop_analysis.json`.
    `progress`: show it (`--progress/--no-progress`)."""
    crop = "central (h/2, w/2)"
    result: dict[str, Any] = {"pred_space": pred_space, "crop": crop, "datasets": {}}
    for ds in datasets:
        rows = []
        bar = progress_bar(len(ds.keys()), f"crop-analysis {ds.name}", "img", enabled=progress)
        with bar:
            for key in bar.iterate(ds.keys()):
                sample = ds.load(key, rgb=False)
                pred = load_prediction(prediction_path(out, ds.name, key), sample.depth.shape)
                rows.append(crop_scores(pred, sample.depth, ds.name, pred_space, sample.valid_mask))
        result["datasets"][ds.name] = summarize_crops(rows)
    write_json(Path(out) / "crop_analysis.json", result)
    return result
