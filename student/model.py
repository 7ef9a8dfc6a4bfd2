"""The student: a Depth Anything V2 (DPT head on a DINOv2 encoder) from a Hugging Face directory.

`Student.forward` takes RGB in [0, 1] and returns the disparity prediction plus the encoder's
last selected layer's patch tokens and those of a frozen copy of the *initial* encoder (for the
feature-alignment loss; the student never sees a teacher).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.model.depth_anything import IMAGENET_MEAN, IMAGENET_STD
from pipeline.model.precision import keep_float32
from pipeline.model.source import CheckpointUnavailable, resolve_checkpoint
from pipeline.toolkit.cliutil import first_line
from student.config import INIT_WEIGHTS

INIT_HELP = (
    "pass a Hugging Face directory or hub id of a Depth Anything model (e.g. "
    "depth-anything/Depth-Anything-V2-Small-hf), or make a tiny one with "
    "`labelgen tiny-checkpoint depth-anything-v2 DIR`"
)


def _load_hf(source: str | Path, who: str) -> nn.Module:
    """`DepthAnythingForDepthEstimation.from_pretrained` of `source` (a directory, or a hub id
    downloaded first when it is not cached: `pipeline.model.source`); a missing or unreachable
    source, or another architecture, is a user error that says what to pass instead."""
    from transformers import AutoConfig, DepthAnythingForDepthEstimation

    try:
        directory = resolve_checkpoint(source, who)
    except CheckpointUnavailable:
        raise
    except FileNotFoundError as e:  # a local directory that does not exist
        raise FileNotFoundError(f"{e}; {INIT_HELP}") from None
    try:
        kind = AutoConfig.from_pretrained(str(directory)).model_type
        if kind != "depth_anything":
            raise ValueError(f"{source!r} holds a {kind!r} model, not Depth Anything; {INIT_HELP}")
        return DepthAnythingForDepthEstimation.from_pretrained(str(directory))
    except OSError as e:
        raise FileNotFoundError(
            f"cannot load a Depth Anything student from {source!r} ({first_line(e)}); {INIT_HELP}"
        ) from e


# Parameters the Depth Anything forward never uses (the masked-image-modelling token, and the
# first fusion layer's residual branch, which has no coarser input to fuse). Left trainable they
# get no gradient, which DistributedDataParallel rejects.
UNUSED_PARAMETERS = (
    "backbone.embeddings.mask_token",
    "neck.fusion_stage.layers.0.residual_layer1.",
)


def _freeze_unused(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        if name.startswith(UNUSED_PARAMETERS):
            param.requires_grad_(False)


class Student(nn.Module):
    """`forward(images [B,3,H,W] in [0,1])` -> {"pred": [B,1,H,W] disparity, "tokens": [B,N,C],
    "frozen_tokens": [B,N,C] (no grad)}; H and W must be multiples of 14."""

    def __init__(self, model: nn.Module, frozen_encoder: bool = True) -> None:
        super().__init__()
        self.model = model
        _freeze_unused(model)
        keep_float32(model.head)  # a bf16 run's prediction is not rounded to bf16
        self.frozen = (
            copy.deepcopy(model.backbone).requires_grad_(False).eval() if frozen_encoder else None
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._tokens: dict[str, torch.Tensor] = {}
        model.backbone.register_forward_hook(self._keep_tokens)

    def _keep_tokens(self, module: nn.Module, args: Any, output: Any) -> None:
        self._tokens["student"] = output.feature_maps[-1][:, 1:]

    def train(self, mode: bool = True) -> Student:
        super().train(mode)
        if self.frozen is not None:
            self.frozen.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = images.shape[-2:]
        if h % 14 or w % 14:
            raise ValueError(f"student input must be a multiple of 14 px, got {h}x{w}")
        x = (images - self.mean) / self.std
        pred = self.model(pixel_values=x).predicted_depth.unsqueeze(1)
        out = {"pred": pred, "tokens": self._tokens.pop("student")}
        if self.frozen is not None:
            with torch.no_grad():
                out["frozen_tokens"] = self.frozen(x).feature_maps[-1][:, 1:]
        return out

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.backbone_config.hidden_size)

    def param_groups(self, lr_decoder: float, encoder_ratio: float = 0.1) -> list[dict]:
        """AdamW groups: encoder (backbone) at `lr_decoder * encoder_ratio`, the rest at
        `lr_decoder`. The frozen copy is not trained."""
        encoder = [p for p in self.model.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in encoder}
        decoder = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        return [
            {"params": encoder, "lr": lr_decoder * encoder_ratio, "name": "encoder"},
            {"params": decoder, "lr": lr_decoder, "name": "decoder"},
        ]


def encoder_only(model: nn.Module) -> nn.Module:
    """A new model of `model`'s architecture (random neck and head, initialised by
    transformers as `from_pretrained` of a fresh config would be; seeded by the caller's torch
    generator) holding `model`'s encoder weights."""
    from transformers import DepthAnythingForDepthEstimation

    fresh = DepthAnythingForDepthEstimation(model.config)
    fresh.backbone.load_state_dict(model.backbone.state_dict())
    return fresh


def load_student(
    source: str | Path, frozen_encoder: bool = True, who: str = "--init", weights: str = "full"
) -> Student:
    """A `Student` around `DepthAnythingForDepthEstimation.from_pretrained(source)`, or only its
    encoder (`weights="encoder"`, see `INIT_WEIGHTS`); the frozen feature-alignment copy is the
    loaded encoder either way. `who` starts the message of an error (the flag or argument that
    named `source`)."""
    if weights not in INIT_WEIGHTS:
        raise ValueError(f"init_weights must be one of {', '.join(INIT_WEIGHTS)}, got {weights!r}")
    model = _load_hf(source, who)
    if weights == "encoder":
        model = encoder_only(model)
    return Student(model, frozen_encoder=frozen_encoder)


def save_architecture(source: str | Path, out_dir: Path) -> Path:
    """Write the model config and image processor of `source` (no weights) to `out_dir`, so that
    a run's checkpoints can be exported without the init checkpoint (`student_from_architecture`).
    """
    from transformers import AutoConfig

    out_dir = Path(out_dir)
    directory = resolve_checkpoint(source, "--init")
    AutoConfig.from_pretrained(str(directory)).save_pretrained(out_dir)
    _image_processor(directory).save_pretrained(out_dir)
    return out_dir


def student_from_architecture(directory: Path) -> Student:
    """A `Student` (no frozen encoder) built from a `save_architecture` directory: its weights are
    random until a state dict is loaded."""
    from transformers import AutoConfig, DepthAnythingForDepthEstimation

    config = AutoConfig.from_pretrained(str(directory))
    return Student(DepthAnythingForDepthEstimation(config), frozen_encoder=False)


def save_hf(student: Student, out_dir: Path, processor_source: str | Path | None = None) -> Path:
    """Write a directory that `AutoModelForDepthEstimation.from_pretrained` and
    `transformers.pipeline("depth-estimation", model=DIR)` load."""
    out_dir = Path(out_dir)
    student.model.save_pretrained(out_dir)
    _image_processor(processor_source).save_pretrained(out_dir)
    return out_dir


def _image_processor(source: str | Path | None):
    """The image processor of `source`, or Depth Anything's (518, keep aspect, multiple of 14)."""
    from transformers import AutoImageProcessor, DPTImageProcessor

    try:
        if source is None:
            raise ValueError("no processor source")
        return AutoImageProcessor.from_pretrained(str(resolve_checkpoint(source, "processor")))
    except (OSError, ValueError, TypeError):
        return DPTImageProcessor(
            size={"height": 518, "width": 518},
            keep_aspect_ratio=True,
            ensure_multiple_of=14,
            image_mean=list(IMAGENET_MEAN),
            image_std=list(IMAGENET_STD),
            do_pad=False,
        )
