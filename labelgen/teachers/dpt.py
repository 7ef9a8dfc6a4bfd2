"""`dpt`: `DPTForDepthEstimation` checkpoints (MiDaS v3.0/v3.1, DPT-Large/Hybrid, BEiT, Swinv2).
Relative disparity, affine invariant, ≥ 0.

Input: mean/std 0.5 (or the processor's), sides rounded up to a multiple of 32 (560 → 576, output
resized back). Plain-ViT DPT models only accept square inputs in transformers: a non-square input
is squashed to its short side (as the HF processor does) and the output resized back. DPT-Hybrid
takes only its `image_size` (384): transformers does not interpolate its position embeddings.
BEiT models run under `no_grad` instead of `inference_mode`. Resampling: the processor's
`resample` (when it names none: bicubic, `DPTImageProcessor`'s default).
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

DPT_MULTIPLE = 32


def square_only(config: Any) -> bool:
    """Plain ViT (no `backbone_config`) and hybrid DPT reshape tokens to a square grid."""
    return getattr(config, "backbone_config", None) is None or bool(
        getattr(config, "is_hybrid", False)
    )


@TEACHERS.register("dpt")
class DPTTeacher(TransformersTeacher):
    """MiDaS / DPT through transformers' `DPTForDepthEstimation`."""

    adapter = "dpt"
    model_types = ("dpt",)
    model_class_name = "DPTForDepthEstimation"
    fixed_output_kind = "disparity"
    default_interpolation = "bicubic"  # DPTImageProcessor's
    options_help = {"full_size": "short side of the full view (default: processor size, 384)"}

    @classmethod
    def input_rule_of(cls, spec: TeacherSpec, config: Any, proc: dict[str, Any]) -> InputRule:
        mean, std = processor_mean_std(proc, ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
        full = option_int(spec, "full_size", processor_short_side(proc, 384), minimum=1)
        if getattr(config, "is_hybrid", False):  # its position embeddings are not interpolated
            side = int(config.image_size)
            return InputRule(mean, std, DPT_MULTIPLE, full, fixed=(side, side))
        return InputRule(mean, std, DPT_MULTIPLE, full, square_only=square_only(config))
