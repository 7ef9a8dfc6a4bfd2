"""Cross-context distillation terms (paper Eq. 7-9) and the total loss.

- `shared_context_loss`: the student's 560² prediction of region k against the teacher's label of
  the same view (`r{k}.sc`), both `[B, H, W]` or `[B, 1, H, W]`.
- `local_global_loss`: each teacher tile label (`r{k}.t{j}`, the teacher's prediction of a
  native-resolution tile box inside the region) against the matching crop of the student's
  prediction of the whole region; every tile normalized on its own; mean over the tiles of a
  sample, then over the samples that have a tile with valid pixels.
- `local_global_gradient`: gradient matching on the same tile crops (the gradient term of a run
  without `L_sc`, whose only labels are the tiles).
- `total_loss`: `L = L_sc + λ1·L_lg + λ2·L_feat + λ3·L_grad`, λ = (0.5, 1.0, 2.0).

Tiles come as the training batch holds them (`student.data.samples.collate`): labels
`tiles [B, T, h, w]` padded beyond `tile_count [B]`, boxes `tile_boxes [B, T, 4]`; the padding
is ignored whatever it holds. Boxes are `[x0, y0, x1, y1]`, half-open, in the coordinates of the
region boxes `region_box [B, 4]` (original image pixels, or the S×S frame of the prediction as in
training). The student predicts the region at `Hp × Wp`, so a tile covers
`Hp · (y1 - y0) / (ry1 - ry0)` × `Wp · (x1 - x0) / (rx1 - rx0)` prediction pixels.

Resampling direction: the teacher's tile label (e.g. 560² for a 560-pixel native tile) is resampled
DOWN to the crop's size in prediction pixels (area averaging; bilinear if that size is larger than
the label), and the student's prediction is sampled bilinearly at the exact centers of the crop's
pixels (fractional box edges, no rounding of the box): cheaper than upsampling the crop to 560² and
it adds no detail the student never predicted. A label NaN anywhere under an output pixel makes
that pixel invalid.

Horizontal flips happen before: the sample builder flips the image and the labels together and
mirrors the region and tile boxes (`student.data.samples.flip_boxes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import EPS, as_bhw, compute_dtype
from .gradient import gradient_matching
from .metric import log_loss_per_image
from .normalize import normalized_l1, normalized_l1_per_image

TERMS = ("sc", "lg", "feat", "grad")
DEFAULT_WEIGHTS: dict[str, float] = {"lg": 0.5, "feat": 1.0, "grad": 2.0}

BoxLike = Tensor | Sequence[Sequence[float]]


def shared_context_loss(
    pred_region: Tensor,
    label_region: Tensor,
    mask: Tensor | None = None,
    norm: str = "hybrid",
    eps: float = EPS,
) -> Tensor:
    """`L_sc`: normalized L1 of the student's region prediction vs the teacher's region label.

    pred_region, label_region: `[B, H, W]` or `[B, 1, H, W]` (same shape); mask: bool or None.
    """
    return normalized_l1(pred_region, label_region, mask, norm, eps)


def _real_tiles(
    tiles: Tensor, tile_boxes: BoxLike, tile_count: Tensor | Sequence[int], batch: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The real tiles of a padded batch in sample order: labels `[N, h, w]`, boxes `[N, 4]`
    (float64, on the labels' device) and the sample `[N]` (int64) of each."""
    if not isinstance(tiles, Tensor) or tiles.dim() != 4 or tiles.shape[0] != batch:
        got = tuple(tiles.shape) if isinstance(tiles, Tensor) else type(tiles).__name__
        raise ValueError(f"tiles must be [{batch}, T, h, w] (padded, as collate gives), got {got}")
    most = tiles.shape[1]
    boxes = torch.as_tensor(tile_boxes, dtype=torch.float64, device=tiles.device)
    if tuple(boxes.shape) != (batch, most, 4):
        raise ValueError(f"tile_boxes must be [{batch}, {most}, 4], got {tuple(boxes.shape)}")
    count = torch.as_tensor(tile_count, device=tiles.device)
    if tuple(count.shape) != (batch,):
        raise ValueError(f"tile_count must be [{batch}], got {tuple(count.shape)}")
    for b, c in enumerate(count.tolist()):  # one host read (a GPU sync) for the check
        if not 0 <= c <= most:
            raise ValueError(f"tile_count[{b}] = {c} is not in [0, {most}]")
    keep = torch.arange(most, device=tiles.device)[None] < count[:, None]
    return tiles[keep], boxes[keep], keep.nonzero()[:, 0]


def whole_regions(pred: Tensor) -> Tensor:
    """Region boxes `[B, 4]` covering the whole `[..., S, S]` prediction of each sample: the
    region boxes of training, where tile boxes are in the S×S frame of the prediction."""
    size = float(pred.shape[-1])
    return torch.tensor([[0.0, 0.0, size, size]]).expand(pred.shape[0], 4)


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


def labels_on_canvas(labels: Tensor, sizes: Tensor, canvas: tuple[int, int]) -> Tensor:
    """Each label of `[N, h, w]` resampled to its size `sizes[n]` on a NaN canvas `[N, Gh, Gw]`.

    Resampling runs in at least float32 (labels may be stored as float16).
    """
    dtype = torch.promote_types(labels.dtype, torch.float32)
    out = torch.full((labels.shape[0], *canvas), float("nan"), dtype=dtype, device=labels.device)
    groups: dict[tuple[int, int], list[int]] = {}
    for n, (gh, gw) in enumerate(sizes.tolist()):  # one device-to-host read for all tiles
        groups.setdefault((gh, gw), []).append(n)
    for (gh, gw), idx in groups.items():
        out[idx, :gh, :gw] = resample_labels(labels[idx].to(dtype), (gh, gw))
    return out


def _check_boxes(boxes: Tensor, name: str) -> None:
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # False for NaN
    if not bool(ok.all()):
        raise ValueError(f"{name} must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")


def _per_sample_mean(per_tile: Tensor, has: Tensor, sample: Tensor, batch: int) -> Tensor:
    """Mean over the tiles of each sample, then over the samples that have a valid tile."""
    w = has.to(per_tile.dtype)
    total = per_tile.new_zeros(batch).index_add(0, sample, per_tile * w)
    count = per_tile.new_zeros(batch).index_add(0, sample, w)
    return (total / count.clamp(min=1)).sum() / (count > 0).sum().clamp(min=1)


def _crops_and_labels(
    pred: Tensor, labels: Tensor, boxes: Tensor, regions: Tensor, sample: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Per tile n: the crop of `pred[sample[n]]` under `boxes[n]` and the label resampled to it.

    Returns crops, labels (NaN outside the tile's size) and `inside`, each `[N, Gh, Gw]`, on a
    canvas as large as the largest crop.
    """
    sizes = crop_sizes(boxes, regions, tuple(pred.shape[-2:]))
    canvas = (int(sizes[:, 0].max()), int(sizes[:, 1].max()))
    grid, inside = crop_grid(boxes, regions, sizes, canvas)
    crops = F.grid_sample(
        pred[sample][:, None],
        grid.to(pred.dtype),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )[:, 0]
    target = labels_on_canvas(labels, sizes, canvas).to(pred.dtype)
    return crops, target, inside


def _tile_views(
    pred_region: Tensor,
    tiles: Tensor,
    tile_boxes: BoxLike,
    region_box: BoxLike,
    tile_count: Tensor | Sequence[int],
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor] | None]:
    """The prediction `[B, Hp, Wp]` (at least float32) and, unless there is no tile, per tile:
    `(crops, labels, inside, sample)` as `_crops_and_labels` gives them and the tile's sample."""
    pred = as_bhw(pred_region, "pred_region")
    pred = pred.to(compute_dtype(pred))  # sample crops in at least float32 (bf16 autocast)
    batch = pred.shape[0]
    labels, boxes, sample = _real_tiles(tiles, tile_boxes, tile_count, batch)
    regions = torch.as_tensor(region_box, dtype=torch.float64, device=pred.device).reshape(-1, 4)
    if regions.shape[0] != batch:
        raise ValueError(f"region_box must be [{batch}, 4], got {tuple(regions.shape)}")
    _check_boxes(regions, "region_box")
    if labels.shape[0] == 0:
        return pred, None
    boxes, sample = boxes.to(pred.device), sample.to(pred.device)
    _check_boxes(boxes, "tile_boxes")
    crops, target, inside = _crops_and_labels(pred, labels, boxes, regions[sample], sample)
    return pred, (crops, target, inside, sample)


def local_global_loss(
    pred_region: Tensor,
    tiles: Tensor,
    tile_boxes: BoxLike,
    region_box: BoxLike,
    tile_count: Tensor | Sequence[int],
    norm: str = "hybrid",
    eps: float = EPS,
) -> Tensor:
    """`L_lg` (scalar): teacher tile labels vs crops of the student's prediction of the region.

    pred_region: `[B, Hp, Wp]` or `[B, 1, Hp, Wp]`, the student's prediction of each region box.
    tiles `[B, T, h, w]`, tile_boxes `[B, T, 4]` and tile_count `[B]`: the batch's padded tiles
    (`collate`); the tiles beyond `tile_count[b]` are padding. region_box: `[B, 4]`. Boxes are
    `[x0, y0, x1, y1]` in the region boxes' coordinates (see the module docstring).
    Label pixels that are not finite, and crop pixels outside the region, are ignored.
    """
    pred, views = _tile_views(pred_region, tiles, tile_boxes, region_box, tile_count)
    if views is None:
        return pred.sum() * 0
    crops, target, inside, sample = views
    per_tile, has = normalized_l1_per_image(crops, target, inside, norm, eps)
    return _per_sample_mean(per_tile, has, sample, pred.shape[0])


def local_global_log_loss(
    pred_region: Tensor,
    tiles: Tensor,
    tile_boxes: BoxLike,
    region_box: BoxLike,
    tile_count: Tensor | Sequence[int],
    kind: str = "silog",
    lam: float = 0.85,
) -> Tensor:
    """`L_lg` of a metric student: each tile's label (depth, not normalized: its scale is the
    lesson) against the crop of the student's region prediction under it, with the log loss
    `kind` (`metric.log_loss_per_image`); tiles mapped as in `local_global_loss`, non-finite
    label pixels ignored. Arguments as `local_global_loss`."""
    pred, views = _tile_views(pred_region, tiles, tile_boxes, region_box, tile_count)
    if views is None:
        return pred.sum() * 0
    crops, target, inside, sample = views
    valid = inside & torch.isfinite(target)
    per_tile, has = log_loss_per_image(crops, torch.nan_to_num(target, nan=1.0), valid, kind, lam)
    return _per_sample_mean(per_tile, has, sample, pred.shape[0])


def local_global_gradient(
    pred_region: Tensor,
    tiles: Tensor,
    tile_boxes: BoxLike,
    region_box: BoxLike,
    tile_count: Tensor | Sequence[int],
    norm: str = "global",
    scales: int = 4,
    eps: float = EPS,
) -> Tensor:
    """Gradient matching (scalar) of each tile label against its crop of the student's region
    prediction, the tiles mapped as in `local_global_loss` and each normalized on its own (the
    tiles form the batch of `gradient_matching`). The gradient term of a run whose only
    distillation labels are the tiles. Arguments as `local_global_loss`."""
    pred, views = _tile_views(pred_region, tiles, tile_boxes, region_box, tile_count)
    if views is None:
        return pred.sum() * 0
    crops, target, inside, _ = views
    return gradient_matching(crops, target, inside, norm, scales, eps)


def _weights(weights: Sequence[float] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(weights, Mapping):
        unknown = set(weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"weights has unknown terms {sorted(unknown)}; use lg, feat, grad")
        return {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in weights.items()}}
    values = list(weights)
    if len(values) != 3:
        raise ValueError(f"weights must be (λ1, λ2, λ3) for lg, feat, grad; got {values}")
    return dict(zip(DEFAULT_WEIGHTS, map(float, values), strict=True))


def total_loss(
    terms: Mapping[str, Tensor],
    weights: Sequence[float] | Mapping[str, float] = (0.5, 1.0, 2.0),
) -> dict[str, Tensor]:
    """`L = L_sc + λ1·L_lg + λ2·L_feat + λ3·L_grad` over the terms given (others count 0).

    terms: scalars keyed by `sc`, `lg`, `feat`, `grad` (any subset, at least one).
    weights: `(λ1, λ2, λ3)` or a mapping with keys `lg`, `feat`, `grad`.
    Returns the terms as given plus `loss`, the weighted sum.
    """
    unknown = set(terms) - set(TERMS)
    if unknown:
        raise ValueError(f"terms has unknown names {sorted(unknown)}; use {', '.join(TERMS)}")
    if not terms:
        raise ValueError("terms must hold at least one of sc, lg, feat, grad")
    for name, value in terms.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError(f"terms[{name!r}] must be a scalar tensor")
    lam = {"sc": 1.0, **_weights(weights)}
    loss = sum(lam[name] * value.reshape(()) for name, value in terms.items())
    return {**terms, "loss": loss}
