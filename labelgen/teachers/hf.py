"""Transformers depth models: the generic `hf` adapter (any `AutoModelForDepthEstimation`) and
the shared machinery the `depth-anything-v2` and `dpt` adapters build on.

The image processor is read as data (`preprocessor_config.json`: mean/std, size, multiple,
resampling) and applied to tensors on the device, so batches never leave the GPU for
preprocessing. Its `resample` (a PIL filter number) decides how the input is resized: bicubic (3,
the DPT/Depth Anything processors' default) as PIL's antialiased bicubic on float RGB, clamped back
to [0,1] as PIL's 8-bit result is (it differs from the processor's output by its rounding to 8
bits, at most half a level); bilinear (2) as before. Columns made before this was followed
recorded `interpolation: bilinear` and keep it (`labelgen run` refuses to mix the two).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from PIL import Image

from labelgen.teachers.base import (
    INTERPOLATIONS,
    TEACHERS,
    Teacher,
    ceil_to_multiple,
    normalize,
    resize_image,
    short_side_size,
)
from labelgen.teachers.source import Checkpoint, ResolvedTeacher
from labelgen.teachers.spec import TeacherSpec, option_bool, option_choice, option_int
from pipeline.labels.manifest import OUTPUT_KINDS
from pipeline.model.depth_anything import IMAGENET_MEAN, IMAGENET_STD
from pipeline.model.precision import PRECISIONS, keep_float32

# `PIL.Image.Resampling` by number (how processors record `resample`) -> `resize` interpolation.
# LANCZOS has no torch kernel: bicubic, as transformers' own torchvision backend falls back to on
# CUDA. BOX and HAMMING have no near equivalent and are refused.
PIL_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic"}
# `model_type`s whose `predicted_depth` is no depth map the generic adapter could store as it is.
NOT_RAW_DEPTH = ("depth_pro",)
# How a metric model that takes no intrinsics uses the camera (recorded in its input rule).
CAMERA_UNUSED = "not used: metric scale learnt from its training cameras"


@dataclass(frozen=True)
class InputRule:
    """How an image tensor becomes `pixel_values` for a transformers depth model."""

    mean: tuple[float, ...] | None
    """Per-channel mean for normalization of [0,1] RGB (None: no normalization)."""
    std: tuple[float, ...] | None
    """Per-channel std (None: no normalization)."""
    multiple: int
    """Input sides are rounded up to a multiple of this (ignored when `fixed`)."""
    full_short: int
    """Short side of the full view (keep aspect, multiple of `multiple`)."""
    fixed: tuple[int, int] | None = None
    """Every input is resized to exactly this `(h, w)` (models with a fixed input size)."""
    square_only: bool = False
    """The model only accepts square inputs: non-square ones are squashed to the short side."""
    interpolation: str = "bilinear"
    """How the input is resampled (`base.INTERPOLATIONS`): the image processor's `resample`."""
    extra: tuple[tuple[str, Any], ...] = ()
    """More `(key, value)` pairs for the recorded rule, e.g. a metric model's `max_depth` and
    how it uses the camera."""

    def model_input_size(self, h: int, w: int) -> tuple[int, int]:
        """The `(h, w)` the model runs at for an `h`×`w` input."""
        if self.fixed:
            return self.fixed
        if self.square_only and h != w:
            side = ceil_to_multiple(min(h, w), self.multiple)
            return side, side
        return ceil_to_multiple(h, self.multiple), ceil_to_multiple(w, self.multiple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description for provenance."""
        if self.fixed:
            how = f"fixed_{self.fixed[0]}x{self.fixed[1]}"
        else:
            how = f"multiple_of_{self.multiple}" + ("_square" if self.square_only else "")
        return {
            "resize": how,
            "multiple": self.multiple,
            "full_view": {"short_side": self.full_short, "multiple": self.multiple},
            "range": "[0,1]",
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "interpolation": self.interpolation,
            **dict(self.extra),
        }


def read_processor_config(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's `preprocessor_config.json` as a dict ({} when it has none)."""
    return checkpoint.read_json("preprocessor_config.json")


def processor_size(proc: dict[str, Any]) -> tuple[int, int] | None:
    """`(h, w)` of the processor's `size` when it is an int or `{height, width}`."""
    size = proc.get("size")
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    return None


def processor_short_side(proc: dict[str, Any], default: int) -> int:
    """The short side the processor resizes to (`default` when it names none)."""
    size = processor_size(proc)
    if size:
        return min(size)
    size = proc.get("size")
    shortest = size.get("shortest_edge") if isinstance(size, dict) else None
    return int(shortest) if shortest else default


def processor_mean_std(
    proc: dict[str, Any], default: tuple[tuple[float, ...], tuple[float, ...]] | None
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Mean/std from the processor; `default` when it names none; None when it disables them."""
    if proc.get("do_normalize") is False:
        return None, None
    if "image_mean" in proc and "image_std" in proc:
        return tuple(proc["image_mean"]), tuple(proc["image_std"])
    return default if default else (None, None)


def processor_resample(proc: dict[str, Any]) -> int | None:
    """The PIL filter number the processor resizes with: its `resample`, else the default of
    its class (`image_processor_type`, when transformers has it), else None."""
    if proc.get("resample") is not None:
        value = proc["resample"]
        return value if isinstance(value, int) else -1  # not a PIL filter number: refused
    name = proc.get("image_processor_type")
    if not name:
        return None
    import transformers

    for candidate in (f"{name}Pil", name):  # the Pil class first: the default may need torchvision
        try:
            value = getattr(getattr(transformers, candidate, None), "resample", None)
        except Exception:  # noqa: BLE001 - a class that cannot be imported has no default here
            value = None
        if value is not None:
            return int(value)
    return None


def processor_interpolation(spec: TeacherSpec, proc: dict[str, Any], default: str) -> str:
    """The `resize` interpolation the image processor declares (`default` when it names none);
    a filter with no equivalent here is refused, naming it."""
    resample = processor_resample(proc)
    if resample is None:
        return default
    if resample not in PIL_RESAMPLE:
        known = {int(r): r.name for r in Image.Resampling}
        shown = f"{proc.get('resample', resample)!r} ({known.get(resample, 'unknown')})"
        raise ValueError(
            f"teacher {spec.name!r}: the image processor of {spec.source} resizes with "
            f"resample={shown}; labelgen resizes teacher inputs with "
            f"{', '.join(INTERPOLATIONS)} only (PIL resample 0, 2, 3; LANCZOS=1 runs as bicubic). "
            'Set "resample" in its preprocessor_config.json to one of them'
        )
    return PIL_RESAMPLE[resample]


def uses_beit(config: Any) -> bool:
    """True for BEiT-based models (MiDaS v3.1 BEiT, ZoeDepth): they need `no_grad`."""
    backbone = getattr(config, "backbone_config", None)
    return "beit" in (getattr(config, "model_type", ""), getattr(backbone, "model_type", ""))


def adapter_for_model_type(model_type: str | None) -> str:
    """The adapter that loads a transformers checkpoint whose `config.json` says `model_type`:
    the one that declares it in `model_types`, else the generic `hf`."""
    for name in TEACHERS:
        cls = TEACHERS.get(name)
        if model_type in getattr(cls, "model_types", ()):
            return name
    return "hf"


def check_model_type(cls: type[TransformersTeacher], checkpoint: Checkpoint) -> None:
    """Refuse a checkpoint whose `config.json` names a `model_type` the adapter does not load
    (e.g. Depth Anything V2 given to `dpt`), naming the adapter that does."""
    spec = checkpoint.spec
    kind = checkpoint.read_json("config.json").get("model_type")
    if not cls.model_types or kind is None or kind in cls.model_types:
        return
    right = adapter_for_model_type(kind)
    use = f"{spec.name}={right}:{spec.source}" + (",kind=..." if right == "hf" else "")
    raise ValueError(
        f"teacher {spec.name!r}: {spec.source} holds a {kind!r} model (config.json model_type), "
        f"not one the {cls.adapter!r} adapter loads ({', '.join(cls.model_types)}); use {use}"
    )


class TransformersTeacher(Teacher):
    """A transformers model whose forward returns `predicted_depth` `[B,h,w]`."""

    model_types: ClassVar[tuple[str, ...]] = ()
    """`config.json` `model_type`s the adapter loads (empty: any depth model)."""
    default_interpolation: ClassVar[str] = "bilinear"
    """The input resampling when the checkpoint's image processor declares none."""
    model_class_name: ClassVar[str] = ""
    """The transformers class whose `from_pretrained` reads the checkpoint (`model_class`)."""
    fixed_output_kind: ClassVar[str | None] = None
    """The output kind of every checkpoint of the adapter (None: `output_kind_of` decides)."""

    def __init__(self, resolved: ResolvedTeacher, device, precision, *, model, rule, **kw):
        super().__init__(resolved, device, precision, input_rule=rule.to_dict(), **kw)
        self.model = model
        self.rule = rule

    @classmethod
    def model_class(cls) -> Any:
        """The transformers class whose `from_pretrained` reads the checkpoint."""
        import transformers

        return getattr(transformers, cls.model_class_name)

    @classmethod
    def output_kind_of(cls, spec: TeacherSpec, config: Any) -> str:
        """The output kind (`fixed_output_kind`, or read from the config or the spec)."""
        if cls.fixed_output_kind is None:
            raise NotImplementedError
        return cls.fixed_output_kind

    @classmethod
    def input_rule_of(cls, spec: TeacherSpec, config: Any, proc: dict[str, Any]) -> InputRule:
        """The input rule from the model config, the processor config and the options."""
        raise NotImplementedError

    @classmethod
    def load_kwargs(cls, spec: TeacherSpec) -> dict[str, Any]:
        """Extra `from_pretrained` keyword arguments."""
        return {}

    @classmethod
    def check_options(cls, spec: TeacherSpec) -> None:
        cls.output_kind_of(spec, None)

    @classmethod
    def check(cls, checkpoint: Checkpoint) -> None:
        """A checkpoint of another model type is refused before the (slow) hash."""
        check_model_type(cls, checkpoint)

    @classmethod
    def interpolation_of(cls, checkpoint: Checkpoint) -> str:
        """The image processor's resampling (`processor_interpolation`)."""
        proc = read_processor_config(checkpoint)
        return processor_interpolation(checkpoint.spec, proc, cls.default_interpolation)

    @classmethod
    def from_checkpoint(
        cls, resolved: ResolvedTeacher, device: torch.device, precision: str
    ) -> Teacher:
        spec = resolved.spec
        model = resolved.load(cls.model_class().from_pretrained, **cls.load_kwargs(spec))
        model = model.to(device=device, dtype=PRECISIONS[precision]).eval()
        if isinstance(getattr(model, "head", None), torch.nn.Module):
            keep_float32(model.head)  # labels not rounded to bf16/fp16 (pipeline.model.precision)
        rule = cls.input_rule_of(spec, model.config, read_processor_config(resolved))
        rule = replace(rule, interpolation=resolved.interpolation)
        return cls(
            resolved,
            device,
            precision,
            model=model,
            rule=rule,
            output_kind=cls.output_kind_of(spec, model.config),
            use_no_grad=uses_beit(model.config),
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B,3,H,W]` in [0,1] -> raw `[B,1,h,w]` at the model's input size (resampled as the
        image processor says)."""
        x = resize_image(x, self.rule.model_input_size(*x.shape[-2:]), self.rule.interpolation)
        if self.rule.mean is not None:
            x = normalize(x, self.rule.mean, self.rule.std)
        out = self.model(pixel_values=x.to(self.dtype)).predicted_depth
        return out.unsqueeze(1) if out.ndim == 3 else out

    def full_view_size(self, h: int, w: int) -> tuple[int, int]:
        """Short side `rule.full_short`, keep aspect, sides multiples of `rule.multiple`."""
        return short_side_size(h, w, self.rule.full_short, self.rule.multiple)


@TEACHERS.register("hf")
class HFTeacher(TransformersTeacher):
    """Any `AutoModelForDepthEstimation` checkpoint; the user declares what it outputs."""

    adapter = "hf"
    model_class_name = "AutoModelForDepthEstimation"
    clamp_min = None  # an arbitrary model's output is stored raw, negative values included
    options_help = {
        "kind": "REQUIRED: what the model outputs, disparity|depth|metric_depth",
        "trust_remote_code": "true to run modelling code shipped with the checkpoint",
        "multiple": "round input sides up to this multiple (default: the image processor's)",
        "full_size": "short side of the full view (default: the image processor's size)",
    }

    @classmethod
    def output_kind_of(cls, spec: TeacherSpec, config: Any) -> str:
        kind = option_choice(spec, "kind", OUTPUT_KINDS)
        if kind is None:
            raise ValueError(
                f"teacher {spec.name!r}: adapter 'hf' needs kind=disparity|depth|metric_depth "
                f"(what the model outputs), e.g. {spec.name}=hf:{spec.source},kind=metric_depth"
            )
        return kind

    @classmethod
    def load_kwargs(cls, spec: TeacherSpec) -> dict[str, Any]:
        return {"trust_remote_code": option_bool(spec, "trust_remote_code", False)}

    @classmethod
    def check(cls, checkpoint: Checkpoint) -> None:
        """Depth Pro's raw output is inverse depth before its focal-length scaling: refused here,
        naming the `depth-pro` adapter that labels it."""
        spec = checkpoint.spec
        if checkpoint.read_json("config.json").get("model_type") in NOT_RAW_DEPTH:
            raise ValueError(
                f"teacher {spec.name!r}: {spec.source} is a Depth Pro model, whose raw output is "
                f"inverse depth before its focal-length scaling; use "
                f"{spec.name}=depth-pro:{spec.source}"
            )

    @classmethod
    def input_rule_of(cls, spec: TeacherSpec, config: Any, proc: dict[str, Any]) -> InputRule:
        mean, std = processor_mean_std(proc, (IMAGENET_MEAN, IMAGENET_STD))
        size = processor_size(proc)
        user_multiple = option_int(spec, "multiple", None, minimum=1)
        multiple = proc.get("ensure_multiple_of") or proc.get("size_divisor") or 1
        multiple = user_multiple or (multiple if multiple > 1 else 32)
        fixed = size if size and not proc.get("keep_aspect_ratio") and not user_multiple else None
        full = option_int(spec, "full_size", processor_short_side(proc, 518), minimum=1)
        extra = (("camera", CAMERA_UNUSED),) if spec.options.get("kind") == "metric_depth" else ()
        return InputRule(mean, std, 1 if fixed else multiple, full, fixed=fixed, extra=extra)
