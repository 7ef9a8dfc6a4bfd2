"""`student export --format onnx`: the student as `model.onnx` and `preprocessing.json` saying
what to feed it and what comes out, for every family of `student.families`.

The graph takes what `Student.forward` takes: RGB in [0, 1], NCHW float32; the student's own
normalization (its processor's mean and std) is inside it. It returns disparity `[B, 1, H, W]`
float32. It is exported with `torch.onnx.export(dynamo=True)`, with a dynamic batch and:
- Depth Anything: dynamic H and W, multiples of 14. `DisparityGraph` recomputes the head because
  transformers' head sizes its upsampling with `int(...)`, which would fix H and W at the traced
  size. The DINOv2 position embeddings are interpolated to every size (bicubic, as in eager mode).
- MiDaS v3.1 BEiT and Swin V2: dynamic H and W, multiples of 32 (`DPTGraph`: the model's own
  forward; a BEiT's with eager attention, as its SDPA path fails to export with dynamic sizes).
  BEiT interpolates its relative-position bias to every size, as in eager mode. Swin V2 is not
  exported in fp16 (it overflows there).
- DPT plain ViT and DPT-Hybrid: one fixed square size, the family's processor side (a hybrid's
  only size): they reshape tokens to a square grid by `sqrt`, which does not export dynamically.
The rule (multiple, fixed size) is also stored in the model's metadata, where `run_onnx` reads it.

Needs the `onnx` extra (onnx, onnxruntime, onnxscript), imported only here and only when used.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.quiet import quiet_loading
from pipeline.toolkit.atomic import follow_umask, write_bytes
from student.model import Student

ONNX_EXTRA = "pip install 'distill-any-depth-pipeline[onnx]'"
OPSET = 18
MODEL_FILE = "model.onnx"
PREPROCESSING_FILE = "preprocessing.json"
PRECISIONS = ("fp32", "fp16")
MULTIPLE = 14
"""Depth Anything's multiple (the default of `check_input`); DPT families have 32."""
MIN_SIDE = 2 * MULTIPLE
"""The exported graph needs at least two multiples per side."""


def require_onnx() -> None:
    """A ValueError naming the extra when onnx, onnxruntime or onnxscript is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if not importlib.util.find_spec(m)]
    if missing:
        raise ValueError(
            f"--format onnx needs {', '.join(missing)}: {ONNX_EXTRA} "
            "(onnx, onnxruntime and onnxscript)"
        )


def _copy_model(student: Student) -> nn.Module:
    """A float32 eval copy of the student's model without the student's token hook (which the
    copy would call, writing into the student)."""
    model = copy.deepcopy(student.model).cpu().float().eval()
    student.family.encoder(model)._forward_hooks.clear()
    return model


class DisparityGraph(nn.Module):
    """What `model.onnx` computes: RGB `[B,3,H,W]` in [0, 1] -> disparity `[B,1,H,W]` float32,
    the student's `pred`. With `dtype=torch.float16` the encoder and neck run in float16 and the
    head in float32 (as training keeps it, `keep_float32`); input and output stay float32."""

    def __init__(self, student: Student, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = _copy_model(student)
        self.dtype = dtype
        self.model.backbone.to(dtype)
        self.model.neck.to(dtype)
        self.register_buffer("mean", student.mean.detach().cpu().clone(), persistent=False)
        self.register_buffer("std", student.std.detach().cpu().clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        x = ((images - self.mean) / self.std).to(self.dtype)
        model, patch = self.model, self.model.config.patch_size
        features = model.backbone(x).feature_maps
        hidden = model.neck(list(features), h // patch, w // patch)[model.head.head_in_index]
        head = model.head  # transformers' head forward, sized by the input instead of int()
        y = head.conv1(hidden.float())
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True)
        y = head.conv3(head.activation1(head.conv2(y)))
        return head.activation2(y) * head.max_depth


class _Float32Head(nn.Module):
    """A DPT head that takes its (float16) features as float32."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        head.__dict__.pop("forward", None)  # `keep_float32`'s autocast override: cast here
        self.head = head.float()

    def forward(self, hidden_states: list[torch.Tensor]) -> torch.Tensor:
        return self.head([h.float() for h in hidden_states])


class DPTGraph(nn.Module):
    """`DisparityGraph` for the DPT families (plain ViT, hybrid, BEiT, Swin V2): the model's own
    forward (a BEiT's with eager attention); with float16 the encoder and neck run in float16,
    the head in float32."""

    def __init__(self, student: Student, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = _copy_model(student)
        if student.family.name == "beit":  # its SDPA path does not export with dynamic sizes
            self.model.set_attn_implementation("eager")
        self.dtype = dtype
        student.family.encoder(self.model).to(dtype)
        self.model.neck.to(dtype)
        self.model.head = _Float32Head(self.model.head)
        self.register_buffer("mean", student.mean.detach().cpu().clone(), persistent=False)
        self.register_buffer("std", student.std.detach().cpu().clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images - self.mean) / self.std).to(self.dtype)
        return self.model(pixel_values=x).predicted_depth.unsqueeze(1)


@dataclass(frozen=True)
class SizeRule:
    """The heights and widths a student's graph takes: multiples of `multiple`, at least two,
    or only `fixed` x `fixed` (square-only families)."""

    multiple: int
    fixed: int | None = None

    @property
    def min_side(self) -> int:
        return 2 * self.multiple


def size_rule(student: Student) -> SizeRule:
    """Dynamic sizes, or the family's processor side for the square-only families (plain ViT
    and hybrid DPT; a hybrid's only size)."""
    family, config = student.family, student.model.config
    if family.square_only(config):
        return SizeRule(family.multiple, family.default_processor_side(config))
    return SizeRule(family.multiple)


def export_onnx(student: Student, out: Path, precision: str = "fp32") -> Path:
    """Write `out/model.onnx` (see the module); returns its path."""
    require_onnx()
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    family = student.family
    if precision == "fp16" and family.fp16_unstable:
        raise ValueError(
            f"--precision fp16 is not offered for a {family.title} student (it overflows in "
            "float16): export it in fp32"
        )
    dtype = torch.float16 if precision == "fp16" else torch.float32
    rule = size_rule(student)
    graph = (DisparityGraph if family.name == "depth-anything" else DPTGraph)(student, dtype)
    m, shapes = rule.multiple, {"images": {0: torch.export.Dim("batch")}}
    if rule.fixed is None:
        height, width = torch.export.Dim("height"), torch.export.Dim("width")
        shapes["images"].update({2: m * height, 3: m * width})
        example = torch.rand(2, 3, 4 * m, 5 * m)  # not 1 or square: nothing specializes
    else:
        example = torch.rand(2, 3, rule.fixed, rule.fixed)
    with quiet_loading(export=True):  # not the exporter's notes on torchvision operators
        program = torch.onnx.export(
            graph.eval(),
            (example,),
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=["images"],
            output_names=["disparity"],
            opset_version=OPSET,
            verbose=False,
        )
    program.model.metadata_props.update(
        {"family": family.name, "multiple_of": str(m), "fixed_side": str(rule.fixed or "")}
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    program.save(str(path))  # beside it `model.onnx.data` when the weights pass 2 GB
    for written in out.glob(f"{MODEL_FILE}*"):
        follow_umask(written)
    return path


def _input_sizes(rule: SizeRule) -> str:
    if rule.fixed is not None:
        return f"exactly {rule.fixed}x{rule.fixed} (fixed at export)"
    return f"multiples of {rule.multiple}, each at least {rule.min_side}"


def _resize(rule: SizeRule, short_side: int, square: bool) -> dict[str, Any]:
    m = rule.multiple
    if rule.fixed is not None or square:
        side = rule.fixed or max(m, round(short_side / m) * m)
        text = f"H = W = {side} (aspect not kept: the image is squashed)"
    else:
        text = (
            f"scale = {short_side} / min(h, w); H = max({m}, round(h * scale / {m}) * {m}), "
            "W likewise"
        )
    return {"short_side": short_side, "keep_aspect": not square, "multiple_of": m, "rule": text}


def preprocessing(student: Student, precision: str) -> dict[str, Any]:
    """What `preprocessing.json` says: the input the graph takes, the resize rule of
    `student predict`, the normalization it does itself, its output and the format."""
    family, config, rule = student.family, student.model.config, size_rule(student)
    square = family.square_only(config)
    resize = _resize(rule, family.default_processor_side(config), square)
    return {
        "format": {"name": "onnx", "file": MODEL_FILE, "opset": OPSET, "precision": precision},
        "family": family.name,
        "input": {
            "name": "images",
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "range": [0.0, 1.0],
            "dynamic": ["batch"] + (["height", "width"] if rule.fixed is None else []),
            "height_width": _input_sizes(rule),
            "multiple_of": rule.multiple,
            "min_side": rule.fixed or rule.min_side,
            "fixed_size": None if rule.fixed is None else [rule.fixed, rule.fixed],
        },
        "normalization": {
            "inside_model": True,
            "mean": [float(v) for v in student.mean.flatten()],
            "std": [float(v) for v in student.std.flatten()],
            "note": "the model computes (x - mean) / std itself: feed RGB in [0, 1]",
        },
        "resize": {
            **resize,
            "square": square,
            "interpolation": "bilinear, antialiased (torch F.interpolate antialias=True)",
        },
        "output": {
            "name": "disparity",
            "shape": "[B, 1, H, W] (the input's H and W)",
            "dtype": "float32",
            "kind": "disparity (relative: up to an unknown scale and shift)",
            "to_image_size": "bilinear resize to the image's h x w (align_corners=False)",
        },
        "precision_note": "fp16: encoder and neck in float16, head in float32; input and "
        "output float32"
        if precision == "fp16"
        else "fp32 throughout",
    }


def write_preprocessing(out: Path, student: Student, precision: str) -> Path:
    path = Path(out) / PREPROCESSING_FILE
    text = json.dumps(preprocessing(student, precision), indent=1) + "\n"
    write_bytes(path, text.encode())
    return path


def check_input(images: np.ndarray, multiple: int = MULTIPLE, fixed: int | None = None) -> None:
    """A one-line ValueError naming the rule when `images` is not what the graph takes
    (multiples of `multiple`, or only `fixed` x `fixed`)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"input must be RGB [B, 3, H, W], got shape {list(images.shape)}")
    h, w = images.shape[-2:]
    if fixed is not None and (h, w) != (fixed, fixed):
        raise ValueError(
            f"this model takes only {fixed}x{fixed} inputs (exported at a fixed size), got "
            f"{h}x{w}; resize to {fixed}x{fixed} as {PREPROCESSING_FILE} says"
        )
    if h % multiple or w % multiple or min(h, w) < 2 * multiple:
        raise ValueError(
            f"input height and width must be multiples of {multiple}, at least {2 * multiple}, "
            f"got {h}x{w}; resize as {PREPROCESSING_FILE} says"
        )
    if images.dtype != np.float32:
        raise ValueError(f"input must be float32 RGB in [0, 1], got {images.dtype}")


def require_runtime(directory: Path) -> None:
    """A one-line ValueError naming the install command when onnxruntime is missing."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        raise ValueError(
            f"{directory} is an ONNX export: running it needs onnxruntime: pip install "
            f"onnxruntime (or the onnx extra: {ONNX_EXTRA})"
        )


def onnx_session(directory: Path):
    """An ONNX Runtime CPU session of `directory/model.onnx` (needs only onnxruntime)."""
    require_runtime(directory)
    import onnxruntime

    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: write it with `student export RUN --format onnx`"
        )
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def session_rule(session) -> SizeRule:
    """The size rule an `onnx_session`'s model was exported with (its metadata; a model
    without it is a Depth Anything export: multiples of 14)."""
    meta = session.get_modelmeta().custom_metadata_map
    fixed = meta.get("fixed_side") or None
    return SizeRule(int(meta.get("multiple_of", MULTIPLE)), None if fixed is None else int(fixed))


def run_onnx(session, images: np.ndarray) -> np.ndarray:
    """Disparity `[B, 1, H, W]` of `images` (checked by `check_input` against the model's size
    rule) from an `onnx_session`."""
    rule = session_rule(session)
    check_input(images, rule.multiple, rule.fixed)
    return session.run(["disparity"], {"images": images})[0]
