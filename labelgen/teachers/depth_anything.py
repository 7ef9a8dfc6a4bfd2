"""`depth-anything-v2`: any `DepthAnythingForDepthEstimation` checkpoint (Depth Anything V1/V2,
Distill Any Depth `-hf`). Relative disparity, affine invariant, ≥ 0; a metric checkpoint
(`config.json` `depth_estimation_type: "metric"`, e.g. `Depth-Anything-V2-Metric-Indoor-*-hf`)
outputs metric depth in metres, in (0, `max_depth`) (20 indoor, 80 outdoor), recorded in the input
rule with `camera` (not used: the model takes no intrinsics).

A metric student (`student export` of a run with `student.output=metric`) is a metric checkpoint
whose `config.json` also has `canonical_focal_px` f_c: its output is canonical depth, the depth
the scene would have if the model's input had focal length f_c pixels. It takes the focal length
(`takes_focal`): `predict_with_focal(images, f_px)` returns metres `predicted · fx_m / f_c`, with
`fx_m = f_px · W_model / W_image` the focal length in pixels of the model's input (the image
resized to the model's input size). Where `f_px` is unknown the canonical camera is assumed
(`fx_m = f_c`: the output is the canonical depth), and that focal length, in pixels of the image,
is returned as estimated; `predict` is that with every focal length unknown.

Input: ImageNet mean/std, sides rounded up to a multiple of the patch size (14): 560 views go in
at 560. Full view: short side 518 (the processor's size, or `full_size=`), keep aspect. Resampling
(full view, and a view whose sides are not multiples of 14): the processor's `resample`, bicubic
in the published processors (and when it names none: `DPTImageProcessor`'s default).
"""

from __future__ import annotations

from typing import Any

import torch

from labelgen.teachers.base import TEACHERS, check_images, resize
from labelgen.teachers.depth_pro import FocalLengths, known_focals
from labelgen.teachers.hf import (
    CAMERA_UNUSED,
    InputRule,
    TransformersTeacher,
    processor_mean_std,
    processor_short_side,
)
from labelgen.teachers.spec import TeacherSpec, option_int
from pipeline.model.depth_anything import (
    CANONICAL_FOCAL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    canonical_focal,
    is_metric,
)


@TEACHERS.register("depth-anything-v2")
class DepthAnythingTeacher(TransformersTeacher):
    """Depth Anything V1/V2 and Distill Any Depth (relative models)."""

    adapter = "depth-anything-v2"
    model_types = ("depth_anything",)
    model_class_name = "DepthAnythingForDepthEstimation"
    default_interpolation = "bicubic"  # DPTImageProcessor's, the processor these checkpoints use
    options_help = {"full_size": "short side of the full view (default 518, the processor's)"}

    @classmethod
    def output_kind_of(cls, spec: TeacherSpec, config: Any) -> str:
        """`metric_depth` for a metric checkpoint, else `disparity` (also before loading)."""
        return "metric_depth" if is_metric(config) else "disparity"

    @classmethod
    def input_rule_of(cls, spec: TeacherSpec, config: Any, proc: dict[str, Any]) -> InputRule:
        mean, std = processor_mean_std(proc, (IMAGENET_MEAN, IMAGENET_STD))
        multiple = int(getattr(config, "patch_size", 14))
        full = option_int(spec, "full_size", processor_short_side(proc, 518), minimum=multiple)
        extra = ()
        if is_metric(config):
            f_c = canonical_focal(config)
            camera = CAMERA_UNUSED if f_c is None else canonical_camera_text(f_c)
            extra = (("max_depth", float(config.max_depth)), ("camera", camera))
            if f_c is not None:
                extra += ((CANONICAL_FOCAL, f_c),)
        return InputRule(mean, std, multiple, full, extra=extra)

    @classmethod
    def from_checkpoint(cls, resolved, device, precision):
        """As every transformers teacher; a metric student (`canonical_focal_px` in its config)
        takes the focal length."""
        teacher = super().from_checkpoint(resolved, device, precision)
        teacher.canonical_focal_px = canonical_focal(teacher.model.config)
        teacher.takes_focal = teacher.canonical_focal_px is not None
        return teacher

    canonical_focal_px: float | None = None
    """f_c of a metric student (its output is canonical depth at f_c), else None."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """A metric student's: with the canonical camera assumed (see the module)."""
        if self.canonical_focal_px is None:
            return super().predict(images)
        return self.predict_with_focal(images)[0]

    def predict_with_focal(
        self, images: torch.Tensor, f_px: FocalLengths = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A metric student's metres `predicted · fx_m / f_c`, the focal length used per image
        (pixels of the image as given) and whether it was assumed (the canonical camera); any
        other Depth Anything ignores `f_px` (`Teacher.predict_with_focal`)."""
        f_c = self.canonical_focal_px
        if f_c is None:
            return super().predict_with_focal(images, f_px)
        check_images(images)
        b, _, h, w = images.shape
        given = known_focals(f_px, b)
        estimated = given.isnan()
        if b == 0:
            return images.new_zeros((0, 1, h, w), dtype=torch.float32), given, estimated
        ratio = self.rule.model_input_size(h, w)[1] / w  # W_model / W_image
        focal = torch.where(estimated, torch.full_like(given, f_c / ratio), given)
        scale = (focal * ratio / f_c).to(torch.float32).view(-1, 1, 1, 1)
        with self._grad_context():
            raw = self._forward(images.to(self.device, torch.float32)).float()
            depth = resize(raw, (h, w)) * scale.to(raw.device)
            depth = depth.clamp_min(0.0)
        return depth.to(images.device, copy=True), focal, estimated


def canonical_camera_text(f_c: float) -> str:
    """How a metric student uses the camera (its input rule's `camera`)."""
    return f"canonical depth at f_c={f_c:g}px of the model input; scaled by the given focal length"
