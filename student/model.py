"""The student: a transformers depth model of any family in `student.families` (Depth Anything,
DPT / MiDaS v3.0, MiDaS v3.1 BEiT and Swin V2) from a Hugging Face directory or hub id.

`Student.forward` takes RGB in [0, 1] and returns the disparity prediction plus the encoder's
last selected layer's patch tokens and those of a frozen copy of the *initial* encoder (for the
feature-alignment loss; the student never sees a teacher). The input is normalized with the
checkpoint's image processor's mean and std.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.depth_anything import CANONICAL_FOCAL
from pipeline.model.precision import keep_float32
from pipeline.model.quiet import quiet_loading
from pipeline.model.random_init import conv_output_on_noise
from pipeline.model.source import CheckpointUnavailable, resolve_checkpoint
from pipeline.toolkit.cliutil import first_line
from student.config import INIT_WEIGHTS, StudentSettings
from student.families import Family, family_of

INIT_HELP = (
    "pass a Hugging Face directory or hub id of a Depth Anything, DPT / MiDaS v3.0 or MiDaS v3.1 "
    "(BEiT, Swin V2) model (e.g. depth-anything/Depth-Anything-V2-Small-hf, "
    "Intel/dpt-swinv2-tiny-256), or make a tiny one with `labelgen tiny-checkpoint "
    "depth-anything-v2 DIR`"
)


def output_config(student: StudentSettings | None) -> dict[str, Any]:
    """The model config fields a student's output sets: none for a relative student; for a
    metric one the Depth Anything metric head (sigmoid × max_depth) and, when it learns
    canonical depth, `canonical_focal_px` (f_c, pixels of the model's input: depth in metres
    is the output × the input's focal length / f_c); None there removes a field an init
    checkpoint had."""
    if student is None or not student.metric:
        return {}
    return {
        "depth_estimation_type": "metric",
        "max_depth": int(student.max_depth),
        CANONICAL_FOCAL: student.canonical_focal,
    }


def apply_output_config(config: Any, fields: dict[str, Any], source: Any) -> None:
    """Set `fields` (`output_config`) on a model config; a metric output on a family without a
    metric head is refused."""
    if not fields:
        return
    if family_of(config).name != "depth-anything":
        raise ValueError(
            f"{source}: student.output=metric needs a Depth Anything student (its head has a "
            f"metric form, sigmoid × max_depth); this is a {family_of(config).title} model"
        )
    for key, value in fields.items():
        if value is None:
            if hasattr(config, key):
                delattr(config, key)
        else:
            setattr(config, key, value)


METRIC_START = 0.1
"""A relative head turned metric starts at this fraction of `max_depth` (`start_metric_head`)."""


def start_metric_head(model: nn.Module, family: Family) -> None:
    """Turn the last conv of a relative Depth Anything head, now under the metric head's sigmoid,
    into a start for metric depth: its output is disparity-like (large where near) and would
    saturate the sigmoid at `max_depth` everywhere, where the sigmoid has no gradient. It is
    reversed (nearer where it saw more disparity) and rescaled on fixed random images, so the
    median starts at `METRIC_START` × max_depth and the interquartile range spans one logit."""
    conv = model.head.conv3
    side = family.pretraining_side(model.config) or 8 * family.multiple
    out = conv_output_on_noise(model, conv, 2, side)
    low, mid, high = torch.quantile(out, torch.tensor([0.25, 0.5, 0.75]))
    k = 1.0 / (high - low).clamp_min(1e-6)
    start = math.log(METRIC_START / (1 - METRIC_START))
    with torch.no_grad():
        conv.weight.mul_(-k)
        conv.bias.copy_(-k * (conv.bias - mid) + start)


def _load_hf(
    source: str | Path, who: str, output: dict[str, Any] | None = None
) -> tuple[nn.Module, Family, Path]:
    """The model of `source` (a directory, or a hub id downloaded first when it is not cached:
    `pipeline.model.source`), its family and its directory; a missing or unreachable source, or
    an architecture of no family, is a user error that says what to pass instead. `output`:
    config fields of the student's output (`output_config`)."""
    from transformers import AutoConfig

    try:
        directory = resolve_checkpoint(source, who)
    except CheckpointUnavailable:
        raise
    except FileNotFoundError as e:  # a local directory that does not exist
        raise FileNotFoundError(f"{e}; {INIT_HELP}") from None
    try:
        config = AutoConfig.from_pretrained(str(directory))
    except OSError as e:
        raise FileNotFoundError(
            f"cannot load a student from {source} ({first_line(e)}); {INIT_HELP}"
        ) from e
    try:
        family = family_of(config)
    except ValueError as e:
        raise ValueError(f"{source}: {e}; {INIT_HELP}") from None
    relative = getattr(config, "depth_estimation_type", None) != "metric"
    apply_output_config(config, output or {}, source)
    try:
        with quiet_loading():
            model = family.model_class().from_pretrained(str(directory), config=config)
        if relative and output:
            start_metric_head(model, family)
        return model, family, Path(directory)
    except OSError as e:
        raise FileNotFoundError(
            f"cannot load a {family.title} student from {source} ({first_line(e)}); {INIT_HELP}"
        ) from e


def unused_parameters(model: nn.Module, family: Family) -> list[str]:
    """Names of the trainable parameters a forward never uses (e.g. DINOv2's masked-image-
    modelling token, the first fusion layer's residual branch): found by one backward on a small
    random input, in eval mode (no running statistic moves) and without touching the global RNG.
    Left trainable they get no gradient, which DistributedDataParallel rejects."""
    side = family.pretraining_side(model.config) or 4 * family.multiple
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, side, side, generator=generator)
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    model(pixel_values=x).predicted_depth.float().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused


class Student(nn.Module):
    """`forward(images [B,3,H,W] in [0,1])` -> {"pred": [B,1,H,W] disparity, "tokens": [B,N,C],
    "frozen_tokens": [B,N,C] (no grad)}.

    With `side` set, a square input of another side is resized to `side` for the model and its
    prediction back (a BEiT student computes at 512 or 384, a DPT one at a multiple of 32, on the
    plan's 560-pixel views); the model's input must be a multiple of `family.multiple`."""

    def __init__(
        self,
        model: nn.Module,
        family: Family,
        mean_std: tuple[Any, Any] | None = None,
        frozen_encoder: bool = True,
        side: int | None = None,
    ) -> None:
        super().__init__()
        self.model, self.family, self.side = model, family, side
        keep_float32(model.head)  # a bf16 run's prediction is not rounded to bf16
        encoder = family.encoder(model)
        self.frozen = (
            copy.deepcopy(encoder).requires_grad_(False).eval() if frozen_encoder else None
        )
        mean, std = mean_std if mean_std is not None else family.mean_std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._tokens: dict[str, torch.Tensor] = {}
        encoder.register_forward_hook(self._keep_tokens)

    def freeze_unused(self) -> list[str]:
        """Freeze the parameters no forward uses (before training, for DDP); returns them."""
        names = unused_parameters(self.model, self.family)
        params = dict(self.model.named_parameters())
        for name in names:
            params[name].requires_grad_(False)
        return names

    @property
    def encoder(self) -> nn.Module:
        return self.family.encoder(self.model)

    def _keep_tokens(self, module: nn.Module, args: Any, output: Any) -> None:
        self._tokens["student"] = self.family.tokens(self.model.config, output, module)

    def train(self, mode: bool = True) -> Student:
        super().train(mode)
        if self.frozen is not None:
            self.frozen.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = images.shape[-2:]
        if self.side is not None and (h, w) != (self.side, self.side):
            images = F.interpolate(images, size=(self.side, self.side), mode="bilinear")
        mh, mw = images.shape[-2:]
        multiple = self.family.multiple
        if mh % multiple or mw % multiple:
            raise ValueError(
                f"a {self.family.title} student's input must be a multiple of {multiple} px, "
                f"got {mh}x{mw}"
            )
        x = (images - self.mean) / self.std
        pred = self.model(pixel_values=x).predicted_depth.unsqueeze(1)
        if (mh, mw) != (h, w):
            pred = F.interpolate(pred, size=(h, w), mode="bilinear")
        out = {"pred": pred, "tokens": self._tokens.pop("student")}
        if self.frozen is not None:
            with torch.no_grad():
                frozen = self.family.run_encoder(self.frozen, x)
                out["frozen_tokens"] = self.family.tokens(self.model.config, frozen, self.frozen)
        return out

    @property
    def hidden_size(self) -> int:
        return self.family.hidden_size(self.model.config)

    def param_groups(self, lr_decoder: float, encoder_ratio: float = 0.1) -> list[dict]:
        """AdamW groups: the encoder at `lr_decoder * encoder_ratio`, the rest at `lr_decoder`.
        The frozen copy is not trained."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in encoder}
        decoder = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        return [
            {"params": encoder, "lr": lr_decoder * encoder_ratio, "name": "encoder"},
            {"params": decoder, "lr": lr_decoder, "name": "decoder"},
        ]


def encoder_only(model: nn.Module, family: Family) -> nn.Module:
    """A new model of `model`'s architecture (random neck and head, initialised by
    transformers as `from_pretrained` of a fresh config would be; seeded by the caller's torch
    generator) holding `model`'s encoder weights."""
    fresh = family.model_class()(model.config)
    family.encoder(fresh).load_state_dict(family.encoder(model).state_dict())
    return fresh


def processor_mean_std(directory: Path) -> tuple[Any, Any] | None:
    """`(image_mean, image_std)` of the image processor a checkpoint directory ships, or None."""
    path = Path(directory) / "preprocessor_config.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if "image_mean" not in saved or "image_std" not in saved:
        return None
    return tuple(saved["image_mean"]), tuple(saved["image_std"])


def load_student(
    source: str | Path,
    frozen_encoder: bool = True,
    who: str = "--init",
    weights: str = "full",
    side: int | None = None,
    output: StudentSettings | None = None,
) -> Student:
    """A `Student` around the model of `source` (any family of `student.families`), or only its
    encoder (`weights="encoder"`, see `INIT_WEIGHTS`); the frozen feature-alignment copy is the
    loaded encoder either way. `side`: see `Student`. `output`: what it outputs
    (`output_config`; None: as the checkpoint). `who` starts the message of an error (the flag
    or argument that named `source`)."""
    if weights not in INIT_WEIGHTS:
        raise ValueError(f"init_weights must be one of {', '.join(INIT_WEIGHTS)}, got {weights!r}")
    model, family, directory = _load_hf(source, who, output_config(output))
    if weights == "encoder":
        model = encoder_only(model, family)
    return Student(model, family, processor_mean_std(directory), frozen_encoder, side)


def save_architecture(
    source: str | Path, out_dir: Path, output: StudentSettings | None = None
) -> Path:
    """Write the model config (with the fields of the student's `output`, `output_config`) and
    image processor of `source` (no weights) to `out_dir`, so that a run's checkpoints can be
    exported without the init checkpoint (`student_from_architecture`).
    """
    from transformers import AutoConfig

    out_dir = Path(out_dir)
    directory = resolve_checkpoint(source, "--init")
    config = AutoConfig.from_pretrained(str(directory))
    apply_output_config(config, output_config(output), source)
    config.save_pretrained(out_dir)
    image_processor(directory, config).save_pretrained(out_dir)
    return out_dir


def student_from_architecture(directory: Path) -> Student:
    """A `Student` (no frozen encoder) built from a `save_architecture` directory: its weights are
    random until a state dict is loaded."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(directory))
    family = family_of(config)
    model = family.model_class()(config)
    return Student(model, family, processor_mean_std(directory), frozen_encoder=False)


def save_hf(student: Student, out_dir: Path, processor_source: str | Path | None = None) -> Path:
    """Write a directory that `AutoModelForDepthEstimation.from_pretrained` and
    `transformers.pipeline("depth-estimation", model=DIR)` load."""
    out_dir = Path(out_dir)
    with quiet_loading():
        student.model.save_pretrained(out_dir)
        image_processor(processor_source, student.model.config).save_pretrained(out_dir)
    return out_dir


def image_processor(source: str | Path | None, config: Any):
    """The image processor of `source`, else its family's: Depth Anything's (518, keep aspect,
    multiple of 14, ImageNet's mean and std) or MiDaS's (the pretraining side, else 384, keep
    aspect, multiple of 32, mean and std 0.5)."""
    with quiet_loading():  # without torchvision, transformers warns it uses the PIL processor
        from transformers import AutoImageProcessor, DPTImageProcessor

    try:
        if source is None:
            raise ValueError("no processor source")
        return AutoImageProcessor.from_pretrained(str(resolve_checkpoint(source, "processor")))
    except (OSError, ValueError, TypeError):
        family = family_of(config)
        mean, std = family.mean_std
        side = family.default_processor_side(config)
        return DPTImageProcessor(
            size={"height": side, "width": side},
            keep_aspect_ratio=True,
            ensure_multiple_of=family.multiple,
            image_mean=list(mean),
            image_std=list(std),
            do_pad=False,
        )
