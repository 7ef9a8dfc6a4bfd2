"""`depth-anything-v2`: any `DepthAnythingForDepthEstimation` checkpoint (Depth Anything V1/V2,
Distill Any Depth `-hf`). Relative disparity, affine invariant, ≥ 0.

Input: ImageNet mean/std, sides rounded up to a multiple of the patch size (14): 560 views go in
at 560. Full view: short side 518 (the processor's size, or `full_size=`), keep aspect. Resampling
(full view, and a view whose sides are not multiples of 14): the processor's `resample`, bicubic
in the published processors (and when it names none: `DPTImageProcessor`'s default).
"""

from __future__ import annotations

from typing import Any

from labelgen.teachers.base import TEACHERS
from labelgen.teachers.hf import (
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
        if config is not None and getattr(config, "depth_estimation_type", "relative") == "metric":
            raise ValueError(
                f"teacher {spec.name!r}: {spec.source} is a metric Depth Anything checkpoint; "
                f"use {spec.name}=hf:{spec.source},kind=metric_depth"
            )
        return "disparity"

    @classmethod
    def input_rule_of(cls, spec: TeacherSpec, config: Any, proc: dict[str, Any]) -> InputRule:
        mean, std = processor_mean_std(proc, (IMAGENET_MEAN, IMAGENET_STD))
        multiple = int(getattr(config, "patch_size", 14))
        full = option_int(spec, "full_size", processor_short_side(proc, 518), minimum=multiple)
        return InputRule(mean, std, multiple, full)
