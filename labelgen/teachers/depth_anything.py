"""`depth-anything-v2`: any `DepthAnythingForDepthEstimation` checkpoint (Depth Anything V1/V2,
Distill Any Depth `-hf`). Relative disparity, affine invariant, ≥ 0; a metric checkpoint
(`config.json` `depth_estimation_type: "metric"`, e.g. `Depth-Anything-V2-Metric-Indoor-*-hf`)
outputs metric depth in metres, in (0, `max_depth`) (20 indoor, 80 outdoor), recorded in the input
rule with `camera` (not used: the model takes no intrinsics).

Input: ImageNet mean/std, sides rounded up to a multiple of the patch size (14): 560 views go in
at 560. Full view: short side 518 (the processor's size, or `full_size=`), keep aspect. Resampling
(full view, and a view whose sides are not multiples of 14): the processor's `resample`, bicubic
in the published processors (and when it names none: `DPTImageProcessor`'s default).
"""

from __future__ import annotations

from typing import Any

from labelgen.teachers.base import TEACHERS
from labelgen.teachers.hf import (
    CAMERA_UNUSED,
    InputRule,
    TransformersTeacher,
    processor_mean_std,
    processor_short_side,
)
from labelgen.teachers.spec import TeacherSpec, option_int
from pipeline.model.depth_anything import IMAGENET_MEAN, IMAGENET_STD


@TEACHERS.register("depth-anything-v2")
class DepthAnythingTeacher(TransformersTeacher):
    """Depth Anything V1/V2 and Distill Any Depth (relative models)."""

    adapter = "depth-anything-v2"
    model_types = ("depth_anything",)
    default_interpolation = "bicubic"  # DPTImageProcessor's, the processor these checkpoints use
    options_help = {"full_size": "short side of the full view (default 518, the processor's)"}

    @classmethod
    def model_class(cls) -> Any:
        from transformers import DepthAnythingForDepthEstimation

        return DepthAnythingForDepthEstimation

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
            extra = (("max_depth", float(config.max_depth)), ("camera", CAMERA_UNUSED))
        return InputRule(mean, std, multiple, full, extra=extra)


def is_metric(config: Any) -> bool:
    """True for a metric Depth Anything (`depth_estimation_type: "metric"`)."""
    return config is not None and getattr(config, "depth_estimation_type", None) == "metric"
