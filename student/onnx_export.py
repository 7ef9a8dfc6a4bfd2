"""`student export --format onnx`: the student as `model.onnx` with dynamic batch, height and
width, and `preprocessing.json` saying what to feed it and what comes out.

The graph takes what `Student.forward` takes: RGB in [0, 1], NCHW float32, H and W multiples of
14; the ImageNet normalization is inside it. It returns disparity `[B, 1, H, W]` float32. It is
exported with `torch.onnx.export(dynamo=True)`; `DisparityGraph` recomputes the head because
transformers' head sizes its upsampling with `int(...)`, which would fix H and W at the traced
size. The DINOv2 position embeddings are interpolated to every size (bicubic, as in eager mode).

Needs the `onnx` extra (onnx, onnxruntime, onnxscript), imported only here and only when used.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.toolkit.atomic import follow_umask, write_bytes
from student.model import Student

ONNX_EXTRA = "pip install 'distill-any-depth-pipeline[onnx]'"
OPSET = 18
MODEL_FILE = "model.onnx"
PREPROCESSING_FILE = "preprocessing.json"
PRECISIONS = ("fp32", "fp16")
MULTIPLE = 14
MIN_SIDE = 2 * MULTIPLE
"""The exported graph needs at least two patches per side."""


def require_onnx() -> None:
    """A ValueError naming the extra when onnx, onnxruntime or onnxscript is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if not importlib.util.find_spec(m)]
    if missing:
        raise ValueError(
            f"--format onnx needs {', '.join(missing)}: {ONNX_EXTRA} "
            "(onnx, onnxruntime and onnxscript)"
        )


class DisparityGraph(nn.Module):
    """What `model.onnx` computes: RGB `[B,3,H,W]` in [0, 1] -> disparity `[B,1,H,W]` float32,
    the student's `pred`. With `dtype=torch.float16` the encoder and neck run in float16 and the
    head in float32 (as training keeps it, `keep_float32`); input and output stay float32."""

    def __init__(self, student: Student, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = copy.deepcopy(student.model).cpu().float().eval()
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


def export_onnx(student: Student, out: Path, precision: str = "fp32") -> Path:
    """Write `out/model.onnx` (see the module); returns its path."""
    require_onnx()
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    graph = DisparityGraph(student, dtype).eval()
    height, width = torch.export.Dim("height"), torch.export.Dim("width")
    shapes = {"images": {0: torch.export.Dim("batch"), 2: MULTIPLE * height, 3: MULTIPLE * width}}
    example = torch.rand(2, 3, 4 * MULTIPLE, 5 * MULTIPLE)  # not 1 or square: nothing specializes
    program = torch.onnx.export(
        graph,
        (example,),
        dynamo=True,
        dynamic_shapes=shapes,
        input_names=["images"],
        output_names=["disparity"],
        opset_version=OPSET,
        verbose=False,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    program.save(str(path))  # beside it `model.onnx.data` when the weights pass 2 GB
    for written in out.glob(f"{MODEL_FILE}*"):
        follow_umask(written)
    return path


def preprocessing(precision: str, short_side: int) -> dict[str, Any]:
    """What `preprocessing.json` says: the input the graph takes, the resize rule of
    `student predict`, the normalization it does itself, its output and the format."""
    from pipeline.model.depth_anything import IMAGENET_MEAN, IMAGENET_STD

    return {
        "format": {"name": "onnx", "file": MODEL_FILE, "opset": OPSET, "precision": precision},
        "input": {
            "name": "images",
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "range": [0.0, 1.0],
            "dynamic": ["batch", "height", "width"],
            "height_width": f"multiples of {MULTIPLE}, each at least {MIN_SIDE}",
        },
        "normalization": {
            "inside_model": True,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "note": "the model computes (x - mean) / std itself: feed RGB in [0, 1]",
        },
        "resize": {
            "short_side": short_side,
            "keep_aspect": True,
            "multiple_of": MULTIPLE,
            "rule": f"scale = {short_side} / min(h, w); H = max({MULTIPLE}, "
            f"round(h * scale / {MULTIPLE}) * {MULTIPLE}), W likewise",
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


def write_preprocessing(out: Path, precision: str, short_side: int) -> Path:
    path = Path(out) / PREPROCESSING_FILE
    write_bytes(path, (json.dumps(preprocessing(precision, short_side), indent=1) + "\n").encode())
    return path


def check_input(images: np.ndarray) -> None:
    """A ValueError naming the rule when `images` is not what the graph takes."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"input must be RGB [B, 3, H, W], got shape {list(images.shape)}")
    h, w = images.shape[-2:]
    if h % MULTIPLE or w % MULTIPLE or min(h, w) < MIN_SIDE:
        raise ValueError(
            f"input height and width must be multiples of {MULTIPLE}, at least {MIN_SIDE}, got "
            f"{h}x{w}; resize as {PREPROCESSING_FILE} says"
        )
    if images.dtype != np.float32:
        raise ValueError(f"input must be float32 RGB in [0, 1], got {images.dtype}")


def onnx_session(directory: Path):
    """An ONNX Runtime CPU session of `directory/model.onnx`."""
    require_onnx()
    import onnxruntime

    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: write it with `student export RUN --format onnx`"
        )
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(session, images: np.ndarray) -> np.ndarray:
    """Disparity `[B, 1, H, W]` of `images` (checked by `check_input`) from an `onnx_session`."""
    check_input(images)
    return session.run(["disparity"], {"images": images})[0]
