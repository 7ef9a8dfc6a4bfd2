"""One training sample from a decoded image, its plan entry and one teacher's labels; `collate`.

Cross-context mode (the paper's method): region k of the plan is cropped from the image and
resized to S×S (PIL bilinear, antialiased when shrinking); the labels are the teacher's `r{k}.sc`
map of that region (resized to S×S when stored at another size) and its `r{k}.t{j}` tile maps
(each a label of a native-resolution tile box, resized to S×S the same way). Tile boxes are mapped
into the student's S×S prediction of the region: `(box − [x0, y0, x0, y0]) · S / side`.

Baseline mode (the paper's "Base": whole image, no crops): the full image is resized to S×S
*without keeping its aspect ratio* (a squash; the `full` label is squashed the same way, so image
and label stay pixel-aligned; no letterbox padding that the losses would have to mask), and the
label is the teacher's `full` map; there are no tiles.

A horizontal flip mirrors image, labels and tile boxes together (`flip_boxes`: `x → S − x`,
x0/x1 swapped). Photometric augmentation changes `image_aug` only. Non-finite label pixels are
NaN; `valid` marks the finite pixels of `sc`. Only the label maps used are decoded (`read` is
called for them). `collate` pads the tiles of a batch (`pad_tiles`).

`focal` is the effective focal length (fx', fy') in pixels of the S×S view the student sees, from
the image's camera and the plan (`view_focal`; a flip leaves it unchanged); NaN when unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import get_worker_info

from pipeline.dataset.camera import Intrinsics, planned_intrinsics
from student.data.augment import AugmentSettings, photometric

BoxesLike = Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]

ReadLabel = Callable[[str], np.ndarray]
"""`read(map name) -> float32 (H, W)` disparity of one view of the current key and teacher."""

BASELINE_REGION = -1
UNKNOWN_FOCAL = (float("nan"), float("nan"))


def view_focal(
    camera: Intrinsics | None, entry: Mapping[str, Any], region: int, size: int
) -> tuple[float, float]:
    """(fx', fy') of the student's S×S view: region `region`'s `r{k}.sc` resized to `size`, or
    with `region` = -1 the whole image squashed to `size` (`planned_intrinsics`); NaN, NaN when
    the camera is unknown."""
    if camera is None:
        return UNKNOWN_FOCAL
    if region == BASELINE_REGION:
        view = planned_intrinsics(camera, entry, size, (size, size))["full"]
    else:
        view = planned_intrinsics(camera, entry, size)[f"r{region}.sc"]
    return view.fx, view.fy


def region_views(entry: Mapping[str, Any], k: int) -> tuple[list[int], list[list[int]]]:
    """`(region box, tile boxes)` of region k of a plan entry."""
    regions = entry["regions"]
    if not 0 <= k < len(regions):
        raise ValueError(f"region {k} does not exist: the plan entry has {len(regions)} regions")
    return list(regions[k]["box"]), [list(t) for t in regions[k]["tiles"]]


def resize_rgb(rgb: np.ndarray, size: int, box: Sequence[float] | None = None) -> np.ndarray:
    """uint8 [H, W, 3] (the `box` [x0, y0, x1, y1] of it) → uint8 [size, size, 3], bilinear."""
    img = Image.fromarray(rgb)
    crop = None if box is None else tuple(float(v) for v in box)
    return np.array(img.resize((size, size), Image.Resampling.BILINEAR, box=crop))


def resize_label(values: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """float32 (h, w) → float32 (size, size), or (H, W) when `size` is a pair, bilinear; a no-op
    when already that size."""
    shape = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if values.shape == shape:
        return np.require(values, np.float32, ["C", "W"])
    img = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32))
    return np.array(img.resize(shape[::-1], Image.Resampling.BILINEAR), dtype=np.float32)


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


def map_tile_boxes(
    region: Sequence[int], tiles: Sequence[Sequence[int]], size: int, flip: bool
) -> np.ndarray:
    """Tile boxes in the student's S×S frame of the region: float32 [T, 4] (x0, y0, x1, y1)."""
    x0, y0, x1, _ = region
    side = x1 - x0
    boxes = (np.asarray(tiles, dtype=np.float64).reshape(-1, 4) - [x0, y0, x0, y0]) * size / side
    if flip:
        boxes = flip_boxes(boxes, size).numpy()
    return boxes.astype(np.float32)


def _image_tensor(rgb: np.ndarray) -> Tensor:
    """uint8 [S, S, 3] → float32 [3, S, S] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def _flip(arr: np.ndarray, flip: bool) -> np.ndarray:
    """Mirror along the width (axis 1 of an image [H, W, C] or a map (H, W))."""
    return np.ascontiguousarray(arr[:, ::-1]) if flip else arr


def _label(read: ReadLabel, name: str, size: int, flip: bool) -> np.ndarray:
    return _flip(resize_label(read(name), size), flip)


def _finish(
    rgb: np.ndarray,
    sc: np.ndarray,
    tiles: list[np.ndarray],
    boxes: np.ndarray,
    rng: np.random.Generator,
    augment: AugmentSettings,
    meta: dict[str, Any],
) -> dict[str, Any]:
    image = _image_tensor(rgb)
    size = image.shape[-1]
    tiles_t = torch.from_numpy(np.stack(tiles)) if tiles else torch.zeros(0, size, size)
    return {
        "image": image,
        "image_aug": photometric(image, augment, rng),
        "sc": torch.from_numpy(sc).unsqueeze(0),
        "valid": torch.from_numpy(np.isfinite(sc)).unsqueeze(0),
        "tiles": tiles_t,
        "tile_boxes": torch.from_numpy(boxes.reshape(-1, 4)),
        **meta,
    }


def _rgb_box(box: Sequence[float], reduction: int) -> list[float]:
    """A box of the stored image in the pixels of its decode reduced by `reduction`."""
    return [v / reduction for v in box]


def cross_context_sample(
    rgb: np.ndarray,
    entry: Mapping[str, Any],
    read: ReadLabel,
    *,
    region: int,
    flip: bool,
    rng: np.random.Generator,
    size: int = 560,
    augment: AugmentSettings | None = None,
    key: str = "",
    teacher: str = "",
    reduction: int = 1,
    tile_indices: Sequence[int] | None = None,
    focal: tuple[float, float] = UNKNOWN_FOCAL,
) -> dict[str, Any]:
    """The sample of region `region`: image/image_aug [3,S,S], sc/valid [1,S,S], tiles [T,S,S],
    tile_boxes [T,4] (float32; valid bool), plus key, teacher, region, flip and `focal` (fx', fy')
    of the view (`view_focal`; NaN: unknown).

    `rgb` is the stored image decoded at 1/`reduction` of its size (`shards.decode_reduced`);
    `tile_indices` selects a subset of the region's tiles (default: all, in plan order).
    """
    box, tiles = region_views(entry, region)
    chosen = list(range(len(tiles))) if tile_indices is None else list(tile_indices)
    rgb_s = _flip(resize_rgb(rgb, size, _rgb_box(box, reduction)), flip)
    sc = _label(read, f"r{region}.sc", size, flip)
    tile_maps = [_label(read, f"r{region}.t{j}", size, flip) for j in chosen]
    boxes = map_tile_boxes(box, [tiles[j] for j in chosen], size, flip)
    meta = {"key": key, "teacher": teacher, "region": region, "flip": bool(flip), "focal": focal}
    return _finish(rgb_s, sc, tile_maps, boxes, rng, augment or AugmentSettings(), meta)


def baseline_sample(
    rgb: np.ndarray,
    read: ReadLabel,
    *,
    flip: bool,
    rng: np.random.Generator,
    size: int = 560,
    augment: AugmentSettings | None = None,
    key: str = "",
    teacher: str = "",
    reduction: int = 1,
    image_size: Sequence[int] | None = None,
    focal: tuple[float, float] = UNKNOWN_FOCAL,
) -> dict[str, Any]:
    """The whole-image sample: the image and the `full` label squashed to S×S; no tiles (T = 0).
    Same keys as `cross_context_sample`; region is -1. With `reduction` > 1, `image_size` is the
    stored image's (H, W)."""
    box = None
    if reduction != 1:
        if image_size is None:
            raise ValueError("baseline_sample needs image_size (H, W) when reduction > 1")
        box = _rgb_box([0, 0, image_size[1], image_size[0]], reduction)
    rgb_s = _flip(resize_rgb(rgb, size, box), flip)
    sc = _label(read, "full", size, flip)
    meta = {"key": key, "teacher": teacher, "region": BASELINE_REGION, "flip": bool(flip)}
    meta["focal"] = focal
    boxes = np.zeros((0, 4), np.float32)
    return _finish(rgb_s, sc, [], boxes, rng, augment or AugmentSettings(), meta)


def _empty(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
    """An uninitialised tensor; in a DataLoader worker it is allocated in shared memory right
    away (as torch's `default_collate` does), so sending the batch costs no extra copy."""
    if get_worker_info() is None:
        return torch.empty(tuple(shape), dtype=dtype)
    numel = int(np.prod(shape))
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel, device="cpu")
    return torch.empty(0, dtype=dtype).new(storage).view(tuple(shape))


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    out = _empty((len(tensors), *tensors[0].shape), tensors[0].dtype)
    return torch.stack(list(tensors), out=out)


def pad_tiles(tiles: Sequence[Tensor], boxes: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Tiles `[T_b, h, w]` and boxes `[T_b, 4]` of B samples, zero-padded to `[B, Tmax, h, w]`
    and `[B, Tmax, 4]` (dtypes kept), with the real counts `tile_count [B]` (int64): the form
    of the batch and of `student.losses.local_global_loss`. All tiles have one size `h × w`."""
    if len(tiles) != len(boxes):
        raise ValueError(
            f"tiles and boxes must have one entry per sample, got {len(tiles)}, {len(boxes)}"
        )
    if not tiles:
        raise ValueError("tiles must hold at least one sample")
    sizes = {tuple(t.shape[-2:]) for t in tiles}
    if len(sizes) > 1:
        raise ValueError(f"tiles must all have one size to be padded, got {sorted(sizes)}")
    (h, w), most = sizes.pop(), max(t.shape[0] for t in tiles)
    out = _empty((len(tiles), most, h, w), tiles[0].dtype)
    out_boxes = torch.zeros(len(tiles), most, 4, dtype=boxes[0].dtype)
    for i, (t, b) in enumerate(zip(tiles, boxes, strict=True)):
        if t.shape[0] != b.shape[0]:
            raise ValueError(f"sample {i}: {t.shape[0]} tiles but {b.shape[0]} tile boxes")
        out[i, : t.shape[0]] = t
        out[i, t.shape[0] :] = 0.0
        out_boxes[i, : b.shape[0]] = b
    return out, out_boxes, torch.tensor([t.shape[0] for t in tiles], dtype=torch.int64)


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch (see `student.data` for the batch format).

    Tiles of varying count are zero-padded to `[B, Tmax, S, S]` (boxes to `[B, Tmax, 4]`) with
    `tile_count [B]` the real counts (`pad_tiles`); keys and teachers become lists.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    names = ("image", "image_aug", "sc", "valid")
    out: dict[str, Any] = {name: _stack([s[name] for s in samples]) for name in names}
    tiles = pad_tiles([s["tiles"] for s in samples], [s["tile_boxes"] for s in samples])
    out.update(zip(("tiles", "tile_boxes", "tile_count"), tiles, strict=True))
    out["region"] = torch.tensor([s["region"] for s in samples], dtype=torch.int64)
    out["flip"] = torch.tensor([s["flip"] for s in samples], dtype=torch.bool)
    focal = [s.get("focal", UNKNOWN_FOCAL) for s in samples]
    out["focal"] = torch.tensor(focal, dtype=torch.float32).reshape(len(samples), 2)
    out["key"] = [s["key"] for s in samples]
    out["teacher"] = [s["teacher"] for s in samples]
    return out
