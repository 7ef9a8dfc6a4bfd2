"""Build the planned views of one image: the full view and every region (`sc`) and tile (`t`).

Views are uint8 `[3, h, w]` tensors (cheap to send from DataLoader workers); the teacher adapter
converts them to its own input range. Region views and degenerate tiles are resized to the plan's
tile side with PIL's antialiased bilinear filter, whatever the teacher (they are the dataset's: the
student is shown the same views); regular tiles are native-resolution crops. The full view is the
teacher's own: its size and its resampling (`Teacher.interpolation`, e.g. bicubic where the image
processor says so, as that processor resizes a whole image) are the teacher's input rule.

When the dataset knows an image's camera, each key's label record carries every view's effective
intrinsics (`view_cameras`, from `pipeline.dataset.camera.planned_intrinsics`): `full` at the
teacher's full-view size, the other views at the tile side. Without a camera the record is as
before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipeline.dataset.camera import Intrinsics, planned_intrinsics
from pipeline.dataset.plan import views as planned_views

FullSize = Callable[[int, int], tuple[int, int]]
CAMERAS_FIELD = "intrinsics"
"""The label record's field holding `{view name: intrinsics}` (`view_cameras`)."""
# `Teacher.interpolation` -> PIL filter (bilinear, bicubic: antialiased when shrinking, as the
# image processors resize with PIL).
PIL_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def _crop_resized(img: Image.Image, box: list[int], side: int) -> Image.Image:
    crop = img.crop(tuple(box))
    if crop.size != (side, side):
        crop = crop.resize((side, side), Image.BILINEAR)
    return crop


def build_views(
    rgb: np.ndarray,
    plan_entry: Mapping[str, Any],
    tile: int,
    full_size: FullSize,
    full_interpolation: str,
) -> dict[str, torch.Tensor]:
    """`{view name: uint8 [3, h, w]}`: `full` at `full_size(H, W)`, resampled with
    `full_interpolation` (a `PIL_FILTERS` name), then the planned views.

    `rgb` is the stored image `[H, W, 3]` uint8; its size must equal the plan's `size`.
    """
    h, w = rgb.shape[:2]
    if [h, w] != list(plan_entry["size"]):
        raise ValueError(f"image is {h}x{w} but the plan says {plan_entry['size']}")
    img = Image.fromarray(rgb)
    fh, fw = full_size(h, w)
    full = img if (fh, fw) == (h, w) else img.resize((fw, fh), PIL_FILTERS[full_interpolation])
    out = {"full": _to_tensor(full)}
    for name, box in planned_views(plan_entry):
        out[name] = _to_tensor(_crop_resized(img, box, tile))
    return out


def view_cameras(
    camera: Intrinsics | None, plan_entry: Mapping[str, Any], tile: int, full_size: FullSize
) -> dict[str, Any]:
    """The label record's fields for one image's camera: `{"intrinsics": {view name: {"fx",
    "fy", "cx", "cy", "width", "height", "source"}}}` for every view `build_views` makes (the
    same sizes), or `{}` when the camera is unknown (records stay as they were)."""
    if camera is None:
        return {}
    height, width = plan_entry["size"]
    views = planned_intrinsics(camera, plan_entry, tile, full_size(height, width))
    return {CAMERAS_FIELD: {name: cam.to_json() for name, cam in views.items()}}
