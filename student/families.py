"""Student families: what differs between the architectures a student can have, one adapter each.

A student is any transformers depth model of these families, recognised from its `config.json`:

- `depth-anything`: Depth Anything V1/V2 and Distill Any Depth (DINOv2 encoder, DPT head);
- `dpt`: DPT / MiDaS v3.0 with a plain ViT (`Intel/dpt-large`), and DPT-Hybrid
  (`Intel/dpt-hybrid-midas`, a BiT stem);
- `beit`: MiDaS v3.1 BEiT (`Intel/dpt-beit-large-512`, `-large-384`, `-base-384`);
- `swinv2`: MiDaS v3.1 Swin V2 (`Intel/dpt-swinv2-tiny-256`, `-base-384`, `-large-384`).

An adapter holds: the model class, the encoder (what `init_weights=encoder` keeps, what trains at
the encoder learning rate and what the frozen feature-alignment copy is), how that encoder is run
and its tokens read, the side multiple, the side it computes at by default, the normalization when
the checkpoint ships no image processor, whether it takes only square inputs, and whether its
evaluation must use `no_grad` rather than `inference_mode`. Nothing outside this module and
`student.model` knows which family it trains. Every family predicts relative disparity (after a
ReLU; MiDaS's values run into the thousands, the losses normalize).

Facts the adapters encode (transformers 5.x, measured on tiny configs):
- DINOv2 needs sides that are multiples of 14; the DPT heads of ViT, BEiT and Swin V2 need
  multiples of 32 (a 560 view computes at 576).
- BEiT interpolates its relative-position bias to other window sizes, which its authors found
  degrades results (microsoft/unilm#376): a BEiT student computes at its pretraining side (512 or
  384) unless the user sets another (`input_side`).
- Tokens: DINOv2 gives LayerNorm-ed tokens after a CLS token, BEiT raw hidden states after a CLS
  token, Swin V2 4-D maps without one (flattened here); plain-ViT and hybrid DPT have no
  `backbone`: their tokens are the `dpt` module's hidden states (CLS first).
- BEiT caches its relative-position index: a forward under `torch.inference_mode` breaks a later
  backward at the same size, so a BEiT student is evaluated under `no_grad`.
- Swin-family models overflow in fp16: train them in bf16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipeline.model.depth_anything import IMAGENET_MEAN, IMAGENET_STD
from pipeline.toolkit.registry import Registry

HALF = (0.5, 0.5, 0.5)


def _backbone_type(config: Any) -> str | None:
    backbone = getattr(config, "backbone_config", None)
    return None if backbone is None else getattr(backbone, "model_type", None)


@dataclass(frozen=True)
class Family:
    """One student architecture family (see the module docstring)."""

    name: str
    title: str
    model_type: str
    """The checkpoint's `config.model_type`."""
    backbone_types: tuple[str | None, ...]
    """`config.backbone_config.model_type` values of this family (None: no backbone config)."""
    model_class_name: str
    """The transformers class that loads it."""
    multiple: int
    """Input sides must be multiples of this."""
    mean_std: tuple[tuple[float, ...], tuple[float, ...]]
    """Normalization when the checkpoint ships no image processor."""
    fixed_side: bool = False
    """Computes at its pretraining side (config `image_size`) unless told otherwise (BEiT)."""
    eval_no_grad: bool = False
    """Evaluate under `no_grad`: `inference_mode` breaks a later backward (BEiT)."""
    fp16_unstable: bool = False
    """Overflows in fp16 (Swin V2): train in bf16 or fp32."""
    trained_on: tuple[str, ...] = ()
    """Benchmarks (evaluation dataset names) the released checkpoints of this family trained
    on, so their scores there are not zero-shot: MiDaS v3.1 trained on NYUv2 and KITTI (its
    README). A student initialised from one inherits it."""

    def matches(self, config: Any) -> bool:
        return config.model_type == self.model_type and _backbone_type(config) in (
            self.backbone_types
        )

    def model_class(self) -> type:
        import transformers

        return getattr(transformers, self.model_class_name)

    def encoder(self, model: nn.Module) -> nn.Module:
        """The encoder: `backbone`, or the `dpt` module of plain-ViT and hybrid DPT."""
        backbone = getattr(model, "backbone", None)
        return backbone if backbone is not None else model.dpt

    def run_encoder(self, encoder: nn.Module, x: torch.Tensor) -> Any:
        """The encoder's output for normalized images `x` (what the model's own call returns)."""
        if self.uses_dpt_module(encoder):
            return encoder(x, output_hidden_states=True)
        return encoder(x)

    @staticmethod
    def uses_dpt_module(encoder: nn.Module) -> bool:
        return not hasattr(encoder, "out_features")

    def tokens(self, config: Any, output: Any, encoder: nn.Module) -> torch.Tensor:
        """`[B, N, C]` patch tokens of the encoder's last selected layer (no CLS token)."""
        if self.uses_dpt_module(encoder):
            hidden = output.hidden_states[config.backbone_out_indices[-1] + 1]
            return hidden[:, 1:]
        last = output.feature_maps[-1]
        if last.dim() == 4:  # Swin V2: [B, C, h, w]
            return last.flatten(2).transpose(1, 2)
        return last[:, 1:]

    def pretraining_side(self, config: Any) -> int | None:
        """The side a BEiT computes at best (its position bias degrades elsewhere) and the only
        one a DPT-Hybrid takes (transformers does not interpolate its position embeddings); None
        for the others."""
        if self.fixed_side:
            return int(config.backbone_config.image_size)
        if self.name == "dpt" and getattr(config, "is_hybrid", False):
            return int(config.image_size)
        return None

    def side(self, config: Any, view: int, requested: int | None = None) -> int:
        """The side the student computes at for `view`-sided views: `requested` when given (a
        multiple of `multiple`), the pretraining side of a BEiT or DPT-Hybrid, else `view`
        rounded up to a multiple."""
        fixed = self.pretraining_side(config)
        if fixed is not None and self.name == "dpt" and requested not in (None, fixed):
            raise ValueError(f"a DPT-Hybrid student computes at {fixed} px only, not {requested}")
        if requested is not None:
            if requested < self.multiple or requested % self.multiple:
                raise ValueError(
                    f"input_side must be a multiple of {self.multiple} for a {self.title} "
                    f"student, got {requested}"
                )
            return requested
        return fixed if fixed is not None else -(-view // self.multiple) * self.multiple

    def hidden_size(self, config: Any) -> int:
        """The width `C` of `tokens`."""
        backbone = getattr(config, "backbone_config", None)
        if backbone is None or self.name == "dpt":  # plain ViT or hybrid: the ViT's width
            return int(config.hidden_size)
        if self.name == "swinv2":  # the last stage's channels
            return int(backbone.embed_dim * 2 ** (len(backbone.depths) - 1))
        return int(backbone.hidden_size)

    def default_processor_side(self, config: Any) -> int:
        """The side of the image processor a checkpoint of this family would ship."""
        if self.name == "depth-anything":
            return 518
        fixed = self.pretraining_side(config)
        backbone = getattr(config, "backbone_config", None)
        size = getattr(backbone, "image_size", None) if fixed is None else fixed
        return int(size) if isinstance(size, int) else 384

    def square_only(self, config: Any) -> bool:
        """Plain-ViT and hybrid DPT reshape tokens to a square grid: square inputs only."""
        return self.name == "dpt"


FAMILIES: Registry[Family] = Registry("student family")
DA, DPT = "DepthAnythingForDepthEstimation", "DPTForDepthEstimation"
MIDAS_V31_TRAINED_ON = ("nyu", "kitti")
IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)
for _family in (  # name, title, model_type, backbone types, class, multiple, mean/std, traits
    Family("depth-anything", "Depth Anything", "depth_anything", ("dinov2",), DA, 14, IMAGENET),
    Family("dpt", "DPT / MiDaS v3.0", "dpt", (None, "bit"), DPT, 32, (HALF, HALF)),
    Family("beit", "MiDaS v3.1 BEiT", "dpt", ("beit",), DPT, 32, (HALF, HALF),
           fixed_side=True, eval_no_grad=True, trained_on=MIDAS_V31_TRAINED_ON),
    Family("swinv2", "MiDaS v3.1 Swin V2", "dpt", ("swinv2",), DPT, 32, (HALF, HALF),
           fp16_unstable=True, trained_on=MIDAS_V31_TRAINED_ON),
):  # fmt: skip
    FAMILIES.register(_family.name)(_family)


def trained_on(directory: Any) -> list[str]:
    """The benchmarks the checkpoint in `directory` (its `config.json`) may have trained on
    (`Family.trained_on`); [] for a model of no student family or one that trained on none."""
    from transformers import AutoConfig

    try:
        return list(family_of(AutoConfig.from_pretrained(str(directory))).trained_on)
    except (OSError, ValueError):
        return []


def family_of(config: Any) -> Family:
    """The family of a checkpoint's config; another architecture is a ValueError naming the
    families there are."""
    for name in FAMILIES.names():
        family = FAMILIES.get(name)
        if family.matches(config):
            return family
    kind = config.model_type
    backbone = _backbone_type(config)
    what = f"{kind!r}" + (f" with a {backbone!r} backbone" if backbone else "")
    titles = "; ".join(FAMILIES.get(n).title for n in FAMILIES.names())
    raise ValueError(f"a {what} model is no student family; students are: {titles}")
