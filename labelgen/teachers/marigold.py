"""`marigold`: a diffusers `MarigoldDepthPipeline` directory or hub id (`prs-eth/marigold-depth-*`).

Output: affine-invariant depth in [0,1], or disparity when the pipeline config says
`prediction_type: disparity`. Options: `steps` (denoising steps), `ensemble` (ensemble size),
`seed` (initial noise; the same seed gives the same labels, whatever the batch composition) and
`processing_res` (the pipeline's processing resolution, long side; 0 = native).

What happens to a view (recorded as the input rule, `input_rule`): the full view is the whole image
resized (bilinear) to long side `processing_res`, keep aspect, both sides rounded to the nearest
multiple of 8 (the VAE factor), and goes in as it is: no padding. Any other view is resized
(antialiased bilinear, the pipeline's `resample_method_input` default) to long side
`processing_res`; the pipeline pads it (replicating the last row/column) to a multiple of 8 only
where a side is not one (never for the 560 square views at a processing resolution that is a
multiple of 8), and crops the prediction back.
"""

from __future__ import annotations

from typing import Any

import torch

from labelgen.teachers.base import TEACHERS, Teacher, long_side_size, resize
from labelgen.teachers.source import ResolvedTeacher, diffusers_load_kwargs
from labelgen.teachers.spec import TeacherSpec, option_int
from pipeline.model.precision import PRECISIONS

KINDS = ("depth", "disparity")


def pipeline_kind(spec: TeacherSpec, pipe: Any) -> str:
    """`depth` or `disparity` from the pipeline's `prediction_type`."""
    kind = pipe.config.get("prediction_type")
    if kind not in KINDS:
        raise ValueError(
            f"teacher {spec.name!r}: {spec.source} is a Marigold pipeline with "
            f"prediction_type={kind!r}; only {list(KINDS)} are depth teachers"
        )
    return kind


def required(spec: TeacherSpec, key: str, value: int | None) -> int:
    """`value`, or a ValueError asking for option `key` when the pipeline has no default."""
    if value is None:
        raise ValueError(
            f"teacher {spec.name!r}: the Marigold pipeline in {spec.source} has no default for "
            f"{key}; pass it as an option, e.g. {spec.name}=marigold:{spec.source},{key}=4"
        )
    return value


@TEACHERS.register("marigold")
class MarigoldTeacher(Teacher):
    """Marigold depth through diffusers, deterministic given `seed`."""

    adapter = "marigold"
    options_help = {
        "steps": "denoising steps (default: the pipeline's default_denoising_steps)",
        "ensemble": "ensemble size (default 1)",
        "seed": "seed of the initial noise (default 0)",
        "processing_res": "processing resolution, long side (default: the pipeline's; 0 = native)",
    }

    def __init__(self, resolved, device, precision, *, pipe, steps, ensemble, seed, res, **kw):
        super().__init__(resolved, device, precision, **kw)
        self.pipe = pipe
        self.steps, self.ensemble, self.seed, self.processing_res = steps, ensemble, seed, res

    @classmethod
    def check_options(cls, spec: TeacherSpec) -> None:
        for key in ("steps", "ensemble"):
            option_int(spec, key, None, minimum=1)
        for key in ("seed", "processing_res"):
            option_int(spec, key, None)

    @classmethod
    def from_checkpoint(
        cls, resolved: ResolvedTeacher, device: torch.device, precision: str
    ) -> Teacher:
        from diffusers import MarigoldDepthPipeline

        spec = resolved.spec
        steps = option_int(spec, "steps", None, minimum=1)
        ensemble = option_int(spec, "ensemble", 1, minimum=1)
        seed = option_int(spec, "seed", 0)
        res = option_int(spec, "processing_res", None)
        kwargs = diffusers_load_kwargs(PRECISIONS[precision])
        pipe = resolved.load(MarigoldDepthPipeline.from_pretrained, **kwargs)
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        steps = required(spec, "steps", steps or pipe.default_denoising_steps)
        if res is None:
            res = pipe.default_processing_resolution
        res = required(spec, "processing_res", res)
        rule = input_rule(res, pipe.vae_scale_factor, steps, ensemble, seed)
        return cls(
            resolved,
            device,
            precision,
            pipe=pipe,
            steps=steps,
            ensemble=ensemble,
            seed=seed,
            res=res,
            output_kind=pipeline_kind(spec, pipe),
            input_rule=rule,
        )

    def _generators(self, batch: int) -> list[torch.Generator]:
        """One CPU generator per (image, ensemble member): member j of every image starts from
        the noise of `seed + j`, so a label never depends on its batch neighbours."""
        return [
            torch.Generator("cpu").manual_seed(self.seed + j)
            for _ in range(batch)
            for j in range(self.ensemble)
        ]

    def processing_size(self, h: int, w: int) -> tuple[int, int]:
        """The pipeline's own rule: long side `processing_res` (integer scaling), 0 = native."""
        if self.processing_res == 0:
            return h, w
        long = max(h, w)
        return h * self.processing_res // long, w * self.processing_res // long

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B,3,H,W]` in [0,1] -> `[B,1,PH,PW]` in [0,1] at the processing size.

        The resize to the processing size happens here in float32 (antialiased bilinear, as
        the pipeline does), so bf16/fp16 pipelines work on any device; the pipeline then pads to
        a multiple of 8, runs, and unpads."""
        b = x.shape[0]
        x = resize(x, self.processing_size(*x.shape[-2:])).clamp(0.0, 1.0)
        out = self.pipe(
            x.to(self.dtype),
            num_inference_steps=self.steps,
            ensemble_size=self.ensemble,
            processing_resolution=0,
            batch_size=b * self.ensemble,
            generator=self._generators(b),
            output_type="pt",
            match_input_resolution=False,
        )
        return out.prediction

    def full_view_size(self, h: int, w: int) -> tuple[int, int]:
        """Long side `processing_res` (keep aspect, multiples of 8); native size when 0."""
        if self.processing_res == 0:
            return h, w
        return long_side_size(h, w, self.processing_res, self.pipe.vae_scale_factor)


def input_rule(res: int, multiple: int, steps: int, ensemble: int, seed: int) -> dict[str, Any]:
    """JSON-able input rule for provenance: what the adapter does to the full view and to the
    other views at processing resolution `res` (0 = native) and VAE factor `multiple`."""
    pad = f"replicate_to_multiple_of_{multiple}_where_a_side_is_not_one"
    if res == 0:
        full = {"native": True, "pad": pad}
    else:
        full = {"long_side": res, "multiple": multiple, "rounding": "nearest", "pad": "none"}
        if res % multiple:  # the rounded full view is resized to long side `res` again
            full.update(resized_again_to_long_side=res, pad=pad)
    return {
        "resize": f"long_side_{res}" if res else "native",
        "multiple": multiple,
        "pad": pad,
        "full_view": full,
        "range": "[-1,1]",
        "interpolation": "bilinear",
        "steps": steps,
        "ensemble": ensemble,
        "seed": seed,
    }
