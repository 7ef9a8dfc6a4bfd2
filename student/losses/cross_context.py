"""Cross-context distillation terms (paper Eq. 7-9) and the total loss.

- `shared_context_loss`: the student's 560² prediction of region k against the teacher's label of
  the same view (`r{k}.sc`), both `[B, H, W]` or `[B, 1, H, W]`.
- `local_global_loss`: each teacher tile label (`r{k}.t{j}`, the teacher's prediction of a
  native-resolution tile box inside the region) against the matching crop of the student's
  prediction of the whole region; every tile normalized on its own; mean over the tiles of a
  sample, then over the samples that have a tile with valid pixels. Resampling: see `tiles.py`.
- `local_global_gradient`: gradient matching on the same tile crops (the gradient term of a run
  without `L_sc`, whose only labels are the tiles).
- `total_loss`: `L = L_sc + λ1·L_lg + λ2·L_feat + λ3·L_grad`, λ = (0.5, 1.0, 2.0).

Horizontal flips happen before: the caller flips the image and the labels together and mirrors
the region and tile boxes with `flip_boxes(boxes, image_width)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import EPS, as_bhw, compute_dtype
from .gradient import gradient_matching
from .normalize import normalized_l1, normalized_l1_per_image
from .tiles import crop_grid, crop_sizes, labels_on_canvas

TERMS = ("sc", "lg", "feat", "grad")
DEFAULT_WEIGHTS: dict[str, float] = {"lg": 0.5, "feat": 1.0, "grad": 2.0}

TilesLike = Tensor | Sequence[Tensor]
BoxesLike = Tensor | Sequence[Tensor] | Sequence[Sequence[Sequence[float]]]


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


def _sample_tiles(
    tiles: TilesLike, tile_boxes: BoxesLike, tile_count: Tensor | Sequence[int] | None, batch: int
) -> tuple[list[Tensor], list[Tensor]]:
    """Per-sample lists of labels `[T_b, h, w]` and boxes `[T_b, 4]` (float64)."""
    if len(tiles) != batch or len(tile_boxes) != batch:
        raise ValueError(
            f"tiles and tile_boxes must have one entry per sample ({batch}), "
            f"got {len(tiles)} and {len(tile_boxes)}"
        )
    if tile_count is None:
        counts = [None] * batch
    else:  # one host read (a GPU sync), not one per sample
        counts = [int(c) for c in torch.as_tensor(tile_count).tolist()]
    if len(counts) != batch:
        raise ValueError(f"tile_count must have {batch} entries, got {len(counts)}")
    labels, boxes = [], []
    for b in range(batch):
        lab = tiles[b][None] if tiles[b].dim() == 2 else as_bhw(tiles[b], f"tiles[{b}]")
        box = torch.as_tensor(tile_boxes[b], dtype=torch.float64).reshape(-1, 4)
        if lab.shape[0] != box.shape[0]:
            raise ValueError(f"sample {b}: {lab.shape[0]} tiles but {box.shape[0]} tile boxes")
        if counts[b] is None:
            keep = ~torch.isnan(box).all(1)  # NaN rows are padding
        elif 0 <= counts[b] <= box.shape[0]:
            keep = torch.arange(box.shape[0]) < counts[b]
        else:
            raise ValueError(f"tile_count[{b}] = {counts[b]} is not in [0, {box.shape[0]}]")
        labels.append(lab[keep.to(lab.device)])
        boxes.append(box[keep].to(lab.device))
    return labels, boxes


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
    pred: Tensor, labels: list[Tensor], boxes: Tensor, regions: Tensor, sample: Tensor
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
    tiles: TilesLike,
    tile_boxes: BoxesLike,
    region_box: Tensor | Sequence[Sequence[float]],
    tile_count: Tensor | Sequence[int] | None,
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor] | None]:
    """The prediction `[B, Hp, Wp]` (at least float32) and, unless there is no tile, per tile:
    `(crops, labels, inside, sample)` as `_crops_and_labels` gives them and the tile's sample."""
    pred = as_bhw(pred_region, "pred_region")
    pred = pred.to(compute_dtype(pred))  # sample crops in at least float32 (bf16 autocast)
    batch = pred.shape[0]
    labels, boxes = _sample_tiles(tiles, tile_boxes, tile_count, batch)
    regions = torch.as_tensor(region_box, dtype=torch.float64, device=pred.device).reshape(-1, 4)
    if regions.shape[0] != batch:
        raise ValueError(f"region_box must be [{batch}, 4], got {tuple(regions.shape)}")
    _check_boxes(regions, "region_box")
    sample = torch.cat([torch.full((b.shape[0],), i) for i, b in enumerate(boxes)]).to(pred.device)
    flat_labels = [lab for per in labels for lab in per]
    if not flat_labels:
        return pred, None
    flat_boxes = torch.cat(boxes)
    _check_boxes(flat_boxes, "tile_boxes")
    crops, target, inside = _crops_and_labels(
        pred, flat_labels, flat_boxes, regions[sample], sample
    )
    return pred, (crops, target, inside, sample)


def local_global_loss(
    pred_region: Tensor,
    tiles: TilesLike,
    tile_boxes: BoxesLike,
    region_box: Tensor | Sequence[Sequence[float]],
    tile_count: Tensor | Sequence[int] | None = None,
    norm: str = "hybrid",
    eps: float = EPS,
) -> Tensor:
    """`L_lg` (scalar): teacher tile labels vs crops of the student's prediction of the region.

    pred_region: `[B, Hp, Wp]` or `[B, 1, Hp, Wp]`, the student's prediction of each region box.
    tiles: a list of B `[T_b, h, w]` labels, or padded `[B, T, h, w]` (`collate_tiles`).
    tile_boxes: a list of B `[T_b, 4]`, or padded `[B, T, 4]`; region_box: `[B, 4]`. Boxes are
    `[x0, y0, x1, y1]` in original image pixels. Padded tiles are those beyond `tile_count[b]`
    (`[B]`) when given, else those whose box row is all NaN (what `collate_tiles` writes).
    Label pixels that are not finite, and crop pixels outside the region, are ignored.
    """
    pred, views = _tile_views(pred_region, tiles, tile_boxes, region_box, tile_count)
    if views is None:
        return pred.sum() * 0
    crops, target, inside, sample = views
    per_tile, has = normalized_l1_per_image(crops, target, inside, norm, eps)
    return _per_sample_mean(per_tile, has, sample, pred.shape[0])


def local_global_gradient(
    pred_region: Tensor,
    tiles: TilesLike,
    tile_boxes: BoxesLike,
    region_box: Tensor | Sequence[Sequence[float]],
    tile_count: Tensor | Sequence[int] | None = None,
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
