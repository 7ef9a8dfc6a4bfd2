"""`zoedepth`: `ZoeDepthForDepthEstimation` checkpoints (`Intel/zoedepth-nyu`, `-kitti`,
`-nyu-kitti`). Metric depth in metres; the model takes no intrinsics (its scale is learnt from its
training cameras: `camera` in the input rule says so).

Input, as `ZoeDepthImageProcessor` does it, on tensors: reflect-pad each side by
`int(sqrt(side / 2) * 3)`, resize (bilinear, `align_corners=True`) keeping the aspect ratio to the
processor's `size` (the scale nearer to 1 of the two), sides rounded to `ensure_multiple_of` (32),
mean/std 0.5. Output, as its `post_process_depth_estimation`: bicubic back to the padded size, the
padding cut off. Full view: the processor's size rule applied to the image. A checkpoint with
several bin heads (nyu-kitti) picks one head per forward by a vote over the batch: each image runs
alone there, so a label never depends on the other images of its batch. BEiT: `no_grad`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from labelgen.teachers.base import TEACHERS, normalize
from labelgen.teachers.hf import (
    CAMERA_UNUSED,
    InputRule,
    TransformersTeacher,
    processor_mean_std,
    processor_size,
)
from labelgen.teachers.spec import TeacherSpec, option_int

ZOE_SIZE = (384, 512)  # ZoeDepthImageProcessor's defaults
ZOE_MULTIPLE = 32
HALF = (0.5, 0.5, 0.5)


def zoe_padding(side: int) -> int:
    """The reflect padding ZoeDepth adds on each end of a `side` (`int(sqrt(side / 2) * 3)`)."""
    return int(math.sqrt(side / 2) * 3)


def _to_multiple(value: float, multiple: int) -> int:
    x = int(np.round(value / multiple) * multiple)
    return x if x >= 0 else math.ceil(value / multiple) * multiple


def zoe_resize(h: int, w: int, size: tuple[int, int], multiple: int, keep_aspect: bool):
    """The processor's output size for an `h`×`w` input (`get_resize_output_image_size`)."""
    sh, sw = size[0] / h, size[1] / w
    if keep_aspect:  # scale as little as possible
        if abs(1 - sw) < abs(1 - sh):
            sh = sw
        else:
            sw = sh
    return max(multiple, _to_multiple(sh * h, multiple)), max(
        multiple, _to_multiple(sw * w, multiple)
    )


@TEACHERS.register("zoedepth")
class ZoeDepthTeacher(TransformersTeacher):
    """ZoeDepth through transformers' `ZoeDepthForDepthEstimation`: metric depth."""

    adapter = "zoedepth"
    model_types = ("zoedepth",)
    model_class_name = "ZoeDepthForDepthEstimation"
    fixed_output_kind = "metric_depth"
    default_interpolation = "bilinear"  # ZoeDepthImageProcessor's
    options_help = {"full_size": "short side of the full view (default: the processor's rule)"}

    def __init__(self, resolved, device, precision, *, model, rule, **kw):
        super().__init__(resolved, device, precision, model=model, rule=rule, **kw)
        extra = dict(rule.extra)
        self.size = tuple(extra["size"])
        self.keep_aspect = bool(extra["keep_aspect_ratio"])
        self.pad = bool(extra["pad"])
        self.one_at_a_time = len(getattr(model.config, "bin_configurations", [])) > 1

    @classmethod
    def input_rule_of(cls, spec: TeacherSpec, config: Any, proc: dict[str, Any]) -> InputRule:
        mean, std = processor_mean_std(proc, (HALF, HALF))
        size = processor_size(proc) or ZOE_SIZE
        multiple = int(proc.get("ensure_multiple_of") or ZOE_MULTIPLE)
        keep = bool(proc.get("keep_aspect_ratio", True))
        full = option_int(spec, "full_size", 0, minimum=1) or 0
        how = "keep_aspect" if keep else "squash"
        full_view = {"short_side": full, "multiple": 1} if full else "the resize rule"
        extra = (
            ("resize", f"zoedepth_{how}_{size[0]}x{size[1]}_multiple_of_{multiple}"),
            ("full_view", full_view),
            ("size", list(size)),
            ("keep_aspect_ratio", keep),
            ("pad", bool(proc.get("do_pad", True))),
            ("align_corners", True),
            ("output_resize", "bicubic to the padded size, padding removed"),
            ("camera", CAMERA_UNUSED),
        )
        return InputRule(mean, std, multiple, full, extra=extra)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.one_at_a_time and x.shape[0] > 1:
            return torch.cat([self._forward_batch(x[i : i + 1]) for i in range(x.shape[0])])
        return self._forward_batch(x)

    def _forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (zoe_padding(h), zoe_padding(w)) if self.pad else (0, 0)
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph), mode="reflect")
        size = zoe_resize(h + 2 * ph, w + 2 * pw, self.size, self.rule.multiple, self.keep_aspect)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        if self.rule.mean is not None:
            x = normalize(x, self.rule.mean, self.rule.std)
        depth = self.model(pixel_values=x.to(self.dtype)).predicted_depth.unsqueeze(1).float()
        depth = F.interpolate(depth, size=(h + 2 * ph, w + 2 * pw), mode="bicubic")
        return depth[..., ph : ph + h, pw : pw + w]

    def full_view_size(self, h: int, w: int) -> tuple[int, int]:
        """The processor's size rule on the image (or short side `full_size=`, keep aspect)."""
        if self.rule.full_short:
            scale = self.rule.full_short / min(h, w)
            return max(1, round(h * scale)), max(1, round(w * scale))
        return zoe_resize(h, w, self.size, self.rule.multiple, self.keep_aspect)
