"""Evaluation figures drawn with numpy and PIL only: colour maps, per-sample panels
(prediction | ground truth | AbsRel error), boundary panels (where detail is lost) and
predicted-vs-true density scatter plots."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evaluation.boundary import EDGE_FIGURE_THRESHOLD, edge_maps
from pipeline.images.decode import encode_png
from pipeline.toolkit.atomic import write_bytes
from pipeline.toolkit.colormap import LUT, colorize, robust_range

"""Colour of invalid pixels (grey; the map itself never is)."""
GAP = 8
MAX_PANEL_WIDTH = 1800
ERROR_RANGE = (0.0, 0.5)
MAX_SCATTER_POINTS = 2_000_000


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: bitmap font
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int) -> None:
    """White text on a black box with its top-left corner at `xy`."""
    font = _font(size)
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    pad = max(2, size // 5)
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(0, 0, 0))
    draw.text(xy, text, fill=(255, 255, 255), font=font)


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array to `size` = (width, height)."""
    if array.dtype == bool:
        if array.shape[::-1] == size:
            return array
        image = Image.fromarray(array.astype(np.uint8) * 255).resize(size, Image.NEAREST)
        return np.asarray(image) > 0
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.shape[::-1] == size:
        return array
    image = Image.fromarray(array, mode="F")
    return np.asarray(image.resize(size, Image.NEAREST))


def _panel_size(h: int, w: int) -> tuple[int, int]:
    scale = min(1.0, (MAX_PANEL_WIDTH - 2 * GAP) / (3 * w))
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


def sample_panel(
    pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray | None
) -> np.ndarray:
    """uint8 `[H, 3W + 2·GAP, 3]`: aligned prediction | ground truth | AbsRel error.

    Depth panels share one range, the valid GT's 2nd..98th percentiles (near = bright); the
    error |p − g| / g spans 0..0.5 (clipped). Pixels outside `mask` (default: finite GT > 0)
    are grey in the GT and error panels. Inputs wider than the panel allows (3W + gaps ≤ 1800)
    are downscaled first (nearest neighbour)."""
    if pred_depth.shape != gt_depth.shape:
        raise ValueError(f"prediction {pred_depth.shape} and ground truth {gt_depth.shape} differ")
    size = _panel_size(*gt_depth.shape)
    pred, gt = _resize(pred_depth, size), _resize(gt_depth, size)
    valid = np.isfinite(gt) & (gt > 0)
    if mask is not None:
        valid &= _resize(np.asarray(mask, dtype=bool), size)
    lo, hi = robust_range(gt, valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.abs(pred - gt) / gt
    panels = [
        colorize(pred, hi, lo),
        colorize(gt, hi, lo, invalid_mask=~valid),
        colorize(error, *ERROR_RANGE, invalid_mask=~valid),
    ]
    w, h = size
    canvas = np.full((h, 3 * w + 2 * GAP, 3), 255, dtype=np.uint8)
    for k, panel in enumerate(panels):
        canvas[:, k * (w + GAP) : k * (w + GAP) + w] = panel
    image = Image.fromarray(canvas)
    draw, font_size = ImageDraw.Draw(image), max(10, min(24, h // 25))
    titles = ("prediction (aligned)", f"ground truth {lo:.2f}..{hi:.2f} m", "AbsRel 0..0.5")
    for k, title in enumerate(titles):
        _label(draw, (k * (w + GAP) + 4, 4), title, font_size)
    return np.asarray(image)


EDGE_COLOURS = {"both": (60, 220, 90), "missed": (235, 60, 60), "spurious": (70, 140, 255)}
"""Boundary panel: edges in both maps (green), only in the ground truth (red: detail lost), only
in the prediction (blue)."""


def _any_resize(edges: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink a bool map to `size` keeping every set pixel visible (a box filter, then > 0)."""
    if edges.shape[::-1] == size:
        return edges
    image = Image.fromarray(edges.astype(np.uint8) * 255).resize(size, Image.BOX)
    return np.asarray(image) > 0


def edge_panel(
    pred_depth: np.ndarray,
    gt_depth: np.ndarray,
    mask: np.ndarray | None,
    t: float = EDGE_FIGURE_THRESHOLD,
) -> np.ndarray:
    """uint8 `[H, W, 3]`: the ground truth's edges against the prediction's at threshold `t`
    (what boundary F1 counts, `evaluation.boundary.edge_maps`) on the dimmed ground truth, so a
    user sees where detail is lost. Downscaled like `sample_panel`, edges kept visible."""
    if pred_depth.shape != gt_depth.shape:
        raise ValueError(f"prediction {pred_depth.shape} and ground truth {gt_depth.shape} differ")
    gt_edges, pred_edges = edge_maps(gt_depth, mask, t), edge_maps(pred_depth, mask, t)
    scale = min(1.0, MAX_PANEL_WIDTH / gt_depth.shape[1])
    w, h = (max(1, math.floor(n * scale)) for n in gt_depth.shape[::-1])
    gt = _resize(gt_depth, (w, h))
    g_e, p_e = _any_resize(gt_edges, (w, h)), _any_resize(pred_edges, (w, h))
    valid = np.isfinite(gt) & (gt > 0)
    lo, hi = robust_range(gt, valid)
    canvas = (colorize(gt, hi, lo, invalid_mask=~valid) * 0.35).astype(np.uint8)
    canvas[g_e & p_e] = EDGE_COLOURS["both"]
    canvas[g_e & ~p_e] = EDGE_COLOURS["missed"]
    canvas[p_e & ~g_e] = EDGE_COLOURS["spurious"]
    image = Image.fromarray(canvas)
    draw, size = ImageDraw.Draw(image), max(10, min(24, h // 25))
    _label(draw, (4, 4), f"edges at t={t:g}: both / only ground truth / only prediction", size)
    return np.asarray(image)


# ---------------------------------------------------------------------------------- scatter


def _subsample(pred: np.ndarray, gt: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with both values finite and > 0; at most `limit`, chosen by a fixed-seed draw."""
    pred = np.asarray(pred, dtype=np.float32).ravel()
    gt = np.asarray(gt, dtype=np.float32).ravel()
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.size} predicted and {gt.size} true values")
    if pred.size > limit:
        index = np.sort(np.random.default_rng(0).integers(0, pred.size, limit))
        pred, gt = pred[index], gt[index]
    keep = np.isfinite(pred) & np.isfinite(gt) & (pred > 0) & (gt > 0)
    return pred[keep], gt[keep]


def _log_range(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Common log10 axis range of both value sets (0.1..99.9th percentiles, padded)."""
    if pred.size == 0:
        return -1.0, 1.0
    both = np.log10(np.concatenate([pred, gt]))
    lo, hi = (float(v) for v in np.percentile(both, [0.1, 99.9]))
    pad = max(0.05 * (hi - lo), 0.05)
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """log10 positions of 1-2-5 values within [lo, hi], thinned to at most `most`."""
    for steps in ((1, 2, 5), (1, 3), (1,)):
        ticks = [
            math.log10(s) + e
            for e in range(math.floor(lo), math.ceil(hi) + 1)
            for s in steps
            if lo <= math.log10(s) + e <= hi
        ]
        if len(ticks) <= most:
            return ticks
    return ticks[:: math.ceil(len(ticks) / most)]


def _tick_text(log_value: float) -> str:
    return f"{10**log_value:.4g}"


def _density(pred: np.ndarray, gt: np.ndarray, rng: tuple[float, float], n: int) -> np.ndarray:
    """uint8 `[n, n, 3]` log-density image: x = true, y = predicted (up), empty bins darkest."""
    if pred.size == 0:
        return np.broadcast_to(LUT[0], (n, n, 3)).copy()
    counts, _, _ = np.histogram2d(np.log10(pred), np.log10(gt), bins=n, range=[rng, rng])
    counts = counts[::-1]  # row 0 = highest predicted value
    peak = math.log(max(float(counts.max()), 2.0))
    t = np.where(counts > 0, 0.15 + 0.85 * np.log(np.maximum(counts, 1)) / peak, 0.0)
    return colorize(t, 0.0, 1.0)


def _axes(draw: ImageDraw.ImageDraw, box: tuple[int, int, int], rng: tuple[float, float]) -> None:
    """Frame, y = x line and tick labels of the square plot area `box` = (left, top, side)."""
    left, top, side = box
    font = _font(11)
    draw.rectangle((left - 1, top - 1, left + side, top + side), outline=(0, 0, 0))
    for start in range(0, side, 10):  # dashed y = x line, 6 px on, 4 off
        end = min(start + 5, side - 1)
        draw.line(
            (left + start, top + side - 1 - start, left + end, top + side - 1 - end),
            fill=(0, 200, 255),
        )
    for tick in _ticks(*rng):
        offset = round((tick - rng[0]) / (rng[1] - rng[0]) * (side - 1))
        x, y = left + offset, top + side - 1 - offset
        draw.line((x, top + side, x, top + side + 4), fill=(0, 0, 0))
        draw.line((left - 5, y, left - 1, y), fill=(0, 0, 0))
        text = _tick_text(tick)
        draw.text((x, top + side + 6), text, fill=(0, 0, 0), font=font, anchor="mt")
        draw.text((left - 7, y), text, fill=(0, 0, 0), font=font, anchor="rm")


def _vertical_text(image: Image.Image, xy: tuple[int, int], text: str) -> None:
    font = _font(12)
    box = font.getbbox(text)
    strip = Image.new("RGB", (box[2] + 2, box[3] + 2), (255, 255, 255))
    ImageDraw.Draw(strip).text((1, 1), text, fill=(0, 0, 0), font=font)
    strip = strip.rotate(90, expand=True)
    image.paste(strip, (xy[0], xy[1] - strip.height // 2))


def scatter_plot(
    pred_values: np.ndarray, gt_values: np.ndarray, title: str, size: int = 512
) -> np.ndarray:
    """uint8 `[size, size, 3]`: predicted vs true depth as a log-log density histogram, with a
    dashed y = x line (cyan), tick labels and `title`. Uses ≤ 2 M pairs (fixed-seed subsample) of
    finite positive values."""
    if size < 160:
        raise ValueError(f"size {size} too small for a labelled plot (min 160)")
    pred, gt = _subsample(pred_values, gt_values, MAX_SCATTER_POINTS)
    rng = _log_range(pred, gt)
    left, top, bottom = 62, 30, 44
    side = size - top - bottom
    image = Image.new("RGB", (size, size), (255, 255, 255))
    image.paste(Image.fromarray(_density(pred, gt, rng, side)), (left, top))
    draw = ImageDraw.Draw(image)
    _axes(draw, (left, top, side), rng)
    draw.text((size // 2, 8), title, fill=(0, 0, 0), font=_font(14), anchor="mt")
    draw.text(
        (left + side // 2, size - 6), "true depth", fill=(0, 0, 0), font=_font(12), anchor="mb"
    )
    _vertical_text(image, (2, top + side // 2), "predicted depth")
    if pred.size == 0:
        _label(draw, (left + 8, top + 8), "no valid points", 12)
    return np.asarray(image)


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write `image` (uint8 `[H, W, 3]` or `[H, W]`) as PNG atomically, creating parent dirs."""
    path = Path(path)
    write_bytes(path, encode_png(image))
    return path
