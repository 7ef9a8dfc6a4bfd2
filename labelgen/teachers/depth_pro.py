"""`depth-pro`: `DepthProForDepthEstimation` checkpoints (`apple/DepthPro-hf`). Metric depth in
metres.

The model outputs canonical inverse depth and, with its field-of-view head, the horizontal field
of view in degrees. As `DepthProImageProcessor.post_process_depth_estimation` computes it, for a
view `W` pixels wide with focal length `f_px` (pixels of that view):

    inverse = resize(canonical_inverse · W / f_px)    (bilinear, to the view's size)
    depth   = 1 / clamp(inverse, 1e-4, 1e4)

so depth is proportional to `f_px` (doubling it doubles the depth, inside the clamp). `f_px` is
the view's own focal length when the caller knows it (`predict(images, f_px=...)`, per image),
else the model's estimate `0.5 · W / tan(fov / 2)`; a checkpoint without the field-of-view head
and no `f_px` given is left unscaled (`f_px = W`), as transformers does. The input rule records
this under `camera`; `predict_with_focal` also returns the focal length used per image and whether
it was estimated, and `predict_with_estimate` the model's own estimate besides (even where `f_px`
was given). `labelgen run` passes each view's focal length when the dataset knows the image's
camera (`labelgen.views.view_focals`) and records all three per view (`focal` in the label
record).

Input, as the processor: squashed to its square `size` (1536 published) bilinearly without
antialiasing, mean/std 0.5. Full view: short side = that size (`full_size=` to change it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from labelgen.teachers.base import TEACHERS, check_images, normalize
from labelgen.teachers.hf import (
    InputRule,
    TransformersTeacher,
    processor_mean_std,
    processor_short_side,
    processor_size,
)
from labelgen.teachers.spec import TeacherSpec, option_int
from pipeline.model.precision import keep_float32

HALF = (0.5, 0.5, 0.5)
DEPTH_PRO_SIZE = 1536
CAMERA_FOCAL = (
    "given f_px when known (labelgen run: the view's fx from the dataset's camera), else estimated"
)
CAMERA_NO_FOV = (
    "given f_px when known (labelgen run: the view's fx from the dataset's camera), else f_px = "
    "image width (no field-of-view head)"
)
INVERSE_CLAMP = (1e-4, 1e4)  # post_process_depth_estimation's clamp of the inverse depth

FocalLengths = float | Sequence[float | None] | torch.Tensor | None
"""`f_px` per image of a batch (None or NaN: unknown), or one value for all of them."""


def focal_from_fov(fov_degrees: torch.Tensor, width: int) -> torch.Tensor:
    """Focal length in pixels of a view `width` wide with horizontal field of view `fov`."""
    return 0.5 * width / torch.tan(0.5 * torch.deg2rad(fov_degrees))


def known_focals(f_px: FocalLengths, batch: int) -> torch.Tensor:
    """`f_px` as a float64 `[batch]` tensor, NaN where unknown; refuses a wrong count or a value
    that is not a positive finite number."""
    if f_px is None:
        return torch.full((batch,), float("nan"), dtype=torch.float64)
    if isinstance(f_px, (int, float)):
        values = torch.full((batch,), float(f_px), dtype=torch.float64)
    else:
        items = f_px.tolist() if isinstance(f_px, torch.Tensor) else list(f_px)
        values = torch.tensor(
            [float("nan") if v is None else float(v) for v in items], dtype=torch.float64
        )
    if values.shape != (batch,):
        raise ValueError(f"f_px: expected one focal length per image ({batch}), got {len(values)}")
    given = values[~values.isnan()]
    if not bool(torch.isfinite(given).all() and (given > 0).all()):
        raise ValueError(f"f_px must be positive focal lengths in pixels, got {values.tolist()}")
    return values


@TEACHERS.register("depth-pro")
class DepthProTeacher(TransformersTeacher):
    """Depth Pro through transformers' `DepthProForDepthEstimation`: metric depth, scaled by the
    view's focal length (given, or the model's estimate)."""

    adapter = "depth-pro"
    takes_focal = True
    model_types = ("depth_pro",)
    model_class_name = "DepthProForDepthEstimation"
    fixed_output_kind = "metric_depth"
    default_interpolation = "bilinear"  # DepthProImageProcessor's
    options_help = {"full_size": "short side of the full view (default: the processor's, 1536)"}

    @classmethod
    def input_rule_of(cls, spec: TeacherSpec, config: Any, proc: dict[str, Any]) -> InputRule:
        mean, std = processor_mean_std(proc, (HALF, HALF))
        side = processor_size(proc) or (DEPTH_PRO_SIZE, DEPTH_PRO_SIZE)
        short = processor_short_side(proc, DEPTH_PRO_SIZE)
        full = option_int(spec, "full_size", short, minimum=1)
        fov_head = config is None or bool(getattr(config, "use_fov_model", False))
        extra = (
            ("antialias", False),
            ("output", "inverse depth resized bilinearly, then depth = 1 / inverse"),
            ("camera", CAMERA_FOCAL if fov_head else CAMERA_NO_FOV),
        )
        return InputRule(mean, std, 1, full, fixed=tuple(side), extra=extra)

    @classmethod
    def from_checkpoint(cls, resolved, device, precision):
        """As every transformers teacher, and the field-of-view head kept in float32 too (a
        bf16 angle is off by up to 0.25 degrees, its focal length by ~1%)."""
        teacher = super().from_checkpoint(resolved, device, precision)
        fov_model = getattr(teacher.model, "fov_model", None)
        if fov_model is not None:
            keep_float32(fov_model.head)
        return teacher

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Canonical inverse depth `[B,1,h,w]` (not scaled by any focal length)."""
        return self._run(x)[0]

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = F.interpolate(x, size=self.rule.fixed, mode="bilinear", align_corners=False)
        if self.rule.mean is not None:
            x = normalize(x, self.rule.mean, self.rule.std)
        out = self.model(pixel_values=x.to(self.dtype))
        fov = out.field_of_view
        return out.predicted_depth.unsqueeze(1).float(), None if fov is None else fov.float()

    def predict(self, images: torch.Tensor, f_px: FocalLengths = None) -> torch.Tensor:
        """`images`: `[B,3,H,W]` float RGB in [0,1]; `f_px`: the focal length in pixels of each
        image as given (`FocalLengths`), None where unknown. Returns metric depth `[B,1,H,W]`
        float32 on the device of `images`."""
        return self.predict_with_focal(images, f_px)[0]

    def predict_with_focal(
        self, images: torch.Tensor, f_px: FocalLengths = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`predict`, plus per image the focal length in pixels the depth was scaled with
        (float64 `[B]`, NaN when neither given nor estimated) and whether the model estimated it
        (bool `[B]`)."""
        return self.predict_with_estimate(images, f_px)[:3]

    def predict_with_estimate(
        self, images: torch.Tensor, f_px: FocalLengths = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`predict_with_focal`, plus the model's own estimate of each image's focal length in
        pixels (float64 `[B]`, from the field-of-view head of the same forward; NaN without the
        head), also where `f_px` was given: `labelgen run` records it per view as a quality
        signal (`labelgen.views.focal_record`)."""
        check_images(images)
        b, _, h, w = images.shape
        given = known_focals(f_px, b)
        if b == 0:
            empty = images.new_zeros((0, 1, h, w), dtype=torch.float32)
            return empty, given, torch.zeros(0, dtype=torch.bool), given.clone()
        with self._grad_context():
            inverse, fov = self._run(images.to(self.device, torch.float32))
            estimated = given.isnan() & (fov is not None)
            own = torch.full((b,), float("nan"), dtype=torch.float64)
            if fov is not None:
                own = focal_from_fov(fov.double().cpu(), w)
            focal = torch.where(estimated, own, given)
            scale = torch.where(focal.isnan(), torch.ones_like(focal), w / focal)
            inverse = inverse * scale.to(inverse.device, torch.float32).view(-1, 1, 1, 1)
            inverse = F.interpolate(inverse, size=(h, w), mode="bilinear", align_corners=False)
            depth = 1.0 / inverse.clamp(*INVERSE_CLAMP)
        return depth.to(images.device, copy=True), focal, estimated, own
