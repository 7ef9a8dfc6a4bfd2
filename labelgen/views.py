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

A teacher whose output depends on the focal length (`Teacher.takes_focal`, e.g. Depth Pro) is
given each view's fx from those same intrinsics (`view_focals`; None without a camera: the teacher
estimates it), and its records carry what it used (`focal_record`), per view:
`{"f_px": focal length in pixels of the view as given to the teacher (null: none), "estimated":
whether the teacher estimated it}`; a teacher that also estimates it when given one (Depth Pro's
field-of-view head) adds `"estimate_px"` (its own estimate, view pixels) and `"estimate_ratio"`:
that estimate scaled back to the source image's pixels over the full view's, so 1 where the
view agrees with the whole image (a crop whose estimate disagrees is suspicious). Records of other
teachers have no `focal` field.
"""

from __future__ import annotations

import math
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
FOCAL_FIELD = "focal"
"""The label record's field holding `{view name: focal length used}` (`focal_record`)."""
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


def view_focals(
    camera: Intrinsics | None, plan_entry: Mapping[str, Any], tile: int, full_size: FullSize
) -> dict[str, float | None]:
    """`{view name: fx}` in pixels of each view as `build_views` makes it (the `fx` that
    `view_cameras` records), or None for every view when the camera is unknown."""
    if camera is None:
        return dict.fromkeys(view_scales(plan_entry, tile, full_size))
    height, width = plan_entry["size"]
    views = planned_intrinsics(camera, plan_entry, tile, full_size(height, width))
    return {name: cam.fx for name, cam in views.items()}


def view_scales(plan_entry: Mapping[str, Any], tile: int, full_size: FullSize) -> dict[str, float]:
    """`{view name: sx}`: how much each view magnifies the source image horizontally (a view's
    fx is the image's fx times sx)."""
    height, width = plan_entry["size"]
    unit = Intrinsics(1.0, 1.0, width / 2, height / 2, width, height, "dataset")
    views = planned_intrinsics(unit, plan_entry, tile, full_size(height, width))
    return {name: cam.fx for name, cam in views.items()}


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def focal_record(
    used: Mapping[str, Mapping[str, Any]], scales: Mapping[str, float]
) -> dict[str, Any]:
    """The record's `focal` field (module docstring) from what the teacher returned per view
    (`{"f_px", "estimated"[, "estimate_px"]}`, NaN: none) and `view_scales`; `{}` when no view
    was predicted."""
    if not used:
        return {}
    full = used.get("full", {}).get("estimate_px")
    full_image = None if full is None else float(full) / scales["full"]
    out = {}
    for name, view in used.items():
        entry: dict[str, Any] = {
            "f_px": _number(view["f_px"]),
            "estimated": bool(view["estimated"]),
        }
        if "estimate_px" in view:
            own = _number(view["estimate_px"])
            entry["estimate_px"] = own
            ratio = None
            if own is not None and full_image is not None and full_image > 0:
                ratio = _number(own / scales[name] / full_image)
            entry["estimate_ratio"] = ratio
        out[name] = entry
    return {FOCAL_FIELD: out}
