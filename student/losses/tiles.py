"""Tile boxes and resampling for the local-global loss.

Boxes are `[x0, y0, x1, y1]` in original image pixels, half-open (as in
`pipeline.dataset.plan`). A tile box lies inside its region box; the student predicts the region
at `Hp × Wp` (560²), so a tile covers `Hp · (y1 - y0) / (ry1 - ry0)` × `Wp · (x1 - x0) /
(rx1 - rx0)` prediction pixels.

Resampling direction: the teacher's tile label (e.g. 560² for a 560-pixel native tile) is resampled
DOWN to the crop's size in prediction pixels (area averaging; bilinear if that size is larger than
the label), and the student's prediction is sampled bilinearly at the exact centers of the crop's
pixels (fractional box edges, no rounding of the box): cheaper than upsampling the crop to 560² and
it adds no detail the student never predicted. A label NaN anywhere under an output pixel makes
that pixel invalid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

BoxesLike = Tensor | Sequence[float] | Sequence[Sequence[float]]


def flip_boxes(boxes: BoxesLike, width: int | float | Tensor) -> Tensor:
    """Mirror `[..., 4]` boxes `[x0, y0, x1, y1]` in an image of width `width` (or widths `[...]`).

    `x0' = width - x1`, `x1' = width - x0`; applying it twice gives the boxes back.
    """
    b = torch.as_tensor(boxes)
    if not b.is_floating_point():  # a fractional width must not be truncated
        b = b.to(torch.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes must have a last dimension of 4, got {tuple(b.shape)}")
    w = torch.as_tensor(width, dtype=b.dtype, device=b.device)
    if w.dim() > 0:
        w = w.reshape(*w.shape, *([1] * (b.dim() - 1 - w.dim())))
    out = b.clone()
    out[..., 0] = w - b[..., 2]
    out[..., 2] = w - b[..., 0]
    return out


def collate_tiles(
    tiles: Sequence[Tensor], boxes: Sequence[BoxesLike]
) -> tuple[Tensor, Tensor, Tensor]:
    """Pad per-sample tiles `[T_b, h, w]` and boxes `[T_b, 4]` to `[B, T, h, w]`, `[B, T, 4]`.

    Padding is NaN in both (a NaN box marks a padded tile for `local_global_loss`). Returns
    `(tiles, boxes, count)`; `count [B]` is the number of real tiles per sample. All tiles must
    have the same `h × w` (the teachers' tile size).
    """
    if len(tiles) != len(boxes):
        raise ValueError(
            f"tiles and boxes must have one entry per sample, got {len(tiles)}, {len(boxes)}"
        )
    if not tiles:
        raise ValueError("tiles must hold at least one sample")
    box_t = [torch.as_tensor(b, dtype=torch.float64).reshape(-1, 4) for b in boxes]
    sizes = {tuple(t.shape[-2:]) for t in tiles if t.numel()}
    if len(sizes) > 1:
        raise ValueError(f"tiles must all have one size to be collated, got {sorted(sizes)}")
    h, w = sizes.pop() if sizes else (1, 1)
    most = max(max(t.shape[0] for t in tiles), 1)
    ref = next((t for t in tiles if t.numel()), tiles[0])
    out = torch.full((len(tiles), most, h, w), float("nan"), dtype=ref.dtype)
    out_boxes = torch.full((len(tiles), most, 4), float("nan"), dtype=torch.float64)
    for i, (t, b) in enumerate(zip(tiles, box_t, strict=True)):
        if t.shape[0] != b.shape[0]:
            raise ValueError(f"sample {i}: {t.shape[0]} tiles but {b.shape[0]} tile boxes")
        out[i, : t.shape[0]] = t.reshape(-1, h, w) if t.numel() else t
        out_boxes[i, : b.shape[0]] = b
    count = torch.tensor([t.shape[0] for t in tiles])
    return out, out_boxes, count


def crop_sizes(tile_boxes: Tensor, region_boxes: Tensor, pred_hw: tuple[int, int]) -> Tensor:
    """Size `[N, 2]` (rows, cols; int64, ≥ 1) of each tile in prediction pixels."""
    th = (tile_boxes[:, 3] - tile_boxes[:, 1]) / (region_boxes[:, 3] - region_boxes[:, 1])
    tw = (tile_boxes[:, 2] - tile_boxes[:, 0]) / (region_boxes[:, 2] - region_boxes[:, 0])
    sizes = torch.stack([th * pred_hw[0], tw * pred_hw[1]], 1)
    return sizes.round().clamp(min=1).to(torch.int64)


def crop_grid(
    tile_boxes: Tensor, region_boxes: Tensor, sizes: Tensor, canvas: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """`grid_sample` grid `[N, Gh, Gw, 2]` (float64) at the crop pixel centers, and `inside`.

    Pixel (i, j) of tile n samples original point `(x0 + (j + .5)·(x1 - x0)/gw, y0 + ...)`, mapped
    to the region's normalized coordinates (`align_corners=False`). `inside [N, Gh, Gw]` is False on
    the canvas padding (i ≥ gh or j ≥ gw) and where the point falls outside the region.
    """
    gh, gw = canvas
    ii = torch.arange(gh, dtype=torch.float64, device=tile_boxes.device)
    jj = torch.arange(gw, dtype=torch.float64, device=tile_boxes.device)
    t, r, s = tile_boxes.double(), region_boxes.double(), sizes.double()
    ys = t[:, 1:2] + (ii + 0.5) * ((t[:, 3] - t[:, 1]) / s[:, 0])[:, None]
    xs = t[:, 0:1] + (jj + 0.5) * ((t[:, 2] - t[:, 0]) / s[:, 1])[:, None]
    gy = 2 * (ys - r[:, 1:2]) / (r[:, 3] - r[:, 1])[:, None] - 1
    gx = 2 * (xs - r[:, 0:1]) / (r[:, 2] - r[:, 0])[:, None] - 1
    ok_y = (ii[None] < s[:, :1]) & (gy.abs() <= 1)
    ok_x = (jj[None] < s[:, 1:]) & (gx.abs() <= 1)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)
    return grid, ok_y[:, :, None] & ok_x[:, None, :]


def resample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Labels `[N, h, w]` resampled to `size`: area averaging down, bilinear up."""
    h, w = labels.shape[-2:]
    if (h, w) == tuple(size):
        return labels
    x = labels[:, None]
    if size[0] <= h and size[1] <= w:
        return F.interpolate(x, size=size, mode="area")[:, 0]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[:, 0]


def labels_on_canvas(labels: list[Tensor], sizes: Tensor, canvas: tuple[int, int]) -> Tensor:
    """Each label `[h, w]` resampled to its size `sizes[n]` on a NaN canvas `[N, Gh, Gw]`.

    Resampling runs in at least float32 (labels may be stored as float16).
    """
    ref = labels[0]
    dtype = torch.promote_types(ref.dtype, torch.float32)
    out = torch.full((len(labels), *canvas), float("nan"), dtype=dtype, device=ref.device)
    groups: dict[tuple[int, ...], list[int]] = {}
    size_list = sizes.tolist()  # one device-to-host read for all tiles
    for n, lab in enumerate(labels):
        key = (*lab.shape[-2:], *size_list[n])
        groups.setdefault(key, []).append(n)
    for (_, _, gh, gw), idx in groups.items():
        stacked = torch.stack([labels[n] for n in idx]).to(dtype)
        out[idx, :gh, :gw] = resample_labels(stacked, (gh, gw))
    return out
