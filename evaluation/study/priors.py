"""What a model must beat, and what it could reach, scored like a model.

Each prior is a folder of prediction files (`predictions/world/KEY.npy`, disparity) that
`evaluation score` scores with the world's protocol, so its row in the report is computed by the
same code as every teacher's and student's:

- `prior-constant`: the same value everywhere. A constant has no scale to fit, so the protocol
  scores it as it stands (its degenerate fit); it is the floor.
- `prior-ramp`: disparity ∝ max(0, row − h·H), the same map for every image, whatever it shows:
  a flat ground seen by a level camera, with the horizon at the fraction `h` of the height fitted
  on the training split (`fit_horizon`). Any model that learnt nothing of the image but the
  average layout scores about this.
- `ceiling-tokens`: the exact disparity averaged over the cells of the models' token grid
  (input side / 14 tokens on the short side) and upsampled bilinearly: what a model that put one
  exact value per token would score. A ceiling for the study's students, not a bound on detail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from evaluation.datasets.base import BenchmarkSample
from evaluation.datasets.world import WorldDataset
from evaluation.protocol import score, summarize
from pipeline.toolkit.atomic import write_bytes

PRIORS = ("prior-constant", "prior-ramp", "ceiling-tokens")
HORIZONS = np.round(np.arange(0.2, 0.801, 0.025), 3)
"""The horizon fractions `fit_horizon` tries."""
PATCH = 14


def load_split(folder: Path, limit: int | None = None, rgb: bool = False) -> list[BenchmarkSample]:
    """The (first `limit`) samples of a rendered world split, read as the `world` benchmark
    reads them (depth, validity mask and, with `rgb`, the image)."""
    ds = WorldDataset(str(folder))
    return [ds.load(key, rgb=rgb) for key in ds.keys()[:limit]]


def ramp(h: float, shape: tuple[int, int]) -> np.ndarray:
    """Disparity ∝ max(0, row − h·H) (+1e-6, so the sky rows are not exactly flat)."""
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    return np.broadcast_to(np.maximum(0.0, rows - h * shape[0]) + 1e-6, shape).copy()


def token_average(depth: np.ndarray, mask: np.ndarray, side: int) -> np.ndarray:
    """The valid exact disparity averaged per cell of a grid with `side // 14` cells on the short
    side (the model's tokens), upsampled bilinearly; cells with no valid pixel take the mean of
    the valid ones."""
    import torch
    import torch.nn.functional as F

    h, w = depth.shape
    rows = max(1, side // PATCH) if h <= w else max(1, round(side * h / w) // PATCH)
    cols = max(1, round(rows * w / h))
    disp = np.where(mask, 1.0 / np.maximum(depth, 1e-6), 0.0)
    ri = np.minimum(np.arange(h) * rows // h, rows - 1)
    ci = np.minimum(np.arange(w) * cols // w, cols - 1)
    cell = (ri[:, None] * cols + ci[None, :]).ravel()
    sums = np.bincount(cell, disp.ravel(), rows * cols)
    counts = np.bincount(cell, mask.ravel().astype(np.float64), rows * cols)
    fill = sums.sum() / max(counts.sum(), 1.0)
    grid = np.where(counts > 0, sums / np.maximum(counts, 1.0), fill).reshape(1, 1, rows, cols)
    up = F.interpolate(torch.from_numpy(grid), size=(h, w), mode="bilinear", align_corners=False)
    return up[0, 0].numpy().astype(np.float32)


def mean_abs_rel(
    samples: list[BenchmarkSample], predict: Callable[[tuple[int, int]], np.ndarray]
) -> float:
    """Mean over `samples` of the protocol's AbsRel of `predict(shape)`."""
    rows = [
        score(predict(s.depth.shape), s.depth, "world", "disparity", s.valid_mask) for s in samples
    ]
    return float(summarize(rows)["abs_rel"])


FIT_IMAGES = 160
"""Images of the training split the horizon is fitted on (the first ones): each try scores every
one of them, boundary F1 included, and more move h by less than its grid step."""


def fit_horizon(train: Path) -> float:
    """The ramp's horizon fraction with the lowest mean AbsRel on the training split `train`."""
    samples = load_split(train, FIT_IMAGES)
    errors = {float(h): mean_abs_rel(samples, lambda hw, h=h: ramp(h, hw)) for h in HORIZONS}
    return min(errors, key=errors.__getitem__)


def write_predictions(out: Path, name: str, test: Path, side: int, horizon: float) -> Path:
    """The prediction files of prior `name` for every image of the split `test`, in `out`
    (an evaluation directory for `evaluation score`), with a `prior.json` saying what they are."""
    out = Path(out)
    folder = out / "predictions" / "world"
    folder.mkdir(parents=True, exist_ok=True)
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; known: {', '.join(PRIORS)}")
    for sample in load_split(test):
        if name == "prior-constant":
            pred = np.ones(sample.depth.shape, np.float32)
        elif name == "prior-ramp":
            pred = ramp(horizon, sample.depth.shape)
        else:
            pred = token_average(sample.depth, sample.valid_mask, side)
        np.save(folder / f"{sample.key}.npy", pred)
    about = {"prior": name, "horizon": horizon, "side": side, "split": str(test)}
    write_bytes(out / "prior.json", json.dumps(about, indent=1).encode())
    return out
