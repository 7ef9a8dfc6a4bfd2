"""The DPT architectures (`DPTForDepthEstimation`) at the sizes the project builds, and randomly
initialised checkpoints of them: MiDaS v3.0 DPT with a plain ViT and DPT-Hybrid (a BiT backbone
under the ViT), MiDaS v3.1 with a BEiT or a Swin V2 backbone. Tiny sizes are for tests (a 64-128
px forward well under a second on CPU, under 2 MB on disk); the others mirror the hub checkpoints
field by field, for benchmarks. Shared by `labelgen` (the `dpt` teacher's checkpoints) and
`student` (students of these families), so `write_dpt` is the one writer of a random DPT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.model.random_init import lift_final_relu, save_dpt_processor, seeded

HALF = (0.5, 0.5, 0.5)  # every DPT / MiDaS processor normalizes with mean = std = 0.5
DPT_MULTIPLE = 32
STAGES4 = ["stage1", "stage2", "stage3", "stage4"]
TINY_INIT = 0.1  # initializer range of the tiny ones, so activations survive (as Depth Anything)


@dataclass(frozen=True)
class DPTSize:
    """One DPT architecture at one size, and the image processor its checkpoint ships."""

    family: str
    """`vit` (plain ViT, MiDaS v3.0), `hybrid` (BiT + ViT), `beit` or `swinv2` (MiDaS v3.1)."""
    dpt: dict[str, Any]
    """`DPTConfig` fields."""
    backbone: dict[str, Any] = field(default_factory=dict)
    """Fields of the backbone's config (`BitConfig`, `BeitConfig`, `Swinv2Config`)."""
    side: int = 384
    """The processor's `size` (height = width): the side the model was trained at."""
    keep_aspect: bool = False
    """The processor's `keep_aspect_ratio` (the v3.1 processors keep it)."""


def _vit(hidden: int, layers: int, heads: int, out: list[int], neck: list[int], **more) -> dict:
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
        "backbone_out_indices": out,
        "neck_hidden_sizes": neck,
        **more,
    }


def beit_backbone(hidden: int, layers: int, heads: int, side: int, out: list[int], **more) -> dict:
    """A `BeitConfig`'s fields for a DPT backbone, as transformers' convert_dpt_beit_to_hf.py:
    patch 16, relative position bias per layer, stages `out` as features."""
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
        "image_size": side,
        "patch_size": 16,
        "use_relative_position_bias": True,
        "reshape_hidden_states": False,
        "out_features": [f"stage{i}" for i in out],
        **more,
    }


def _swinv2(
    side: int, dim: int, depths: list[int], heads: list[int], window: int, pretrained: list[int]
) -> dict:
    # as transformers' convert_dpt_swinv2_to_hf.py: patch 4, the four stages out
    return {
        "image_size": side,
        "patch_size": 4,
        "embed_dim": dim,
        "depths": depths,
        "num_heads": heads,
        "window_size": window,
        "out_features": STAGES4,
        "pretrained_window_sizes": pretrained,
    }


# The tiny ViT of the plain and hybrid families: 4 layers of width 32, all four taken out.
TINY_VIT = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "backbone_out_indices": [0, 1, 2, 3],
    "fusion_hidden_size": 16,
    "initializer_range": TINY_INIT,
}
OWN = [0, 0, 0, 0]  # Swin V2 with no pretrained window: position-bias coordinates not rescaled
W22K = [12, 12, 12, 6]  # the base and large ones: windows of their ImageNet-22k pretraining

# Sizes by family, the tiny one first. The plain-ViT, hybrid and BEiT families are ViTs at 1/16
# (patch 16); Swin V2 is hierarchical (1/4 .. 1/32, no readout token, no reassemble stage).
DPT_SIZES: dict[str, DPTSize] = {
    "tiny": DPTSize("vit", {**TINY_VIT, "neck_hidden_sizes": [8, 16, 32, 32]}),
    # Intel/dpt-large (MiDaS v3.0 DPT-Large): ViT-L/16 at 384
    "large": DPTSize("vit", _vit(1024, 24, 16, [5, 11, 17, 23], [256, 512, 1024, 1024])),
    # BiT stem + 3 stages (1/4, 1/8, 1/16): the first two feed the neck directly, the third is
    # the ViT's patch embedding (1x1 conv). Stage channels = neck_hidden_sizes[:2] and
    # backbone_featmap_shape[1].
    "tiny-hybrid": DPTSize(
        "hybrid",
        {
            **TINY_VIT,
            "neck_hidden_sizes": [16, 32, 32, 32],
            "image_size": 64,
            "backbone_featmap_shape": [1, 64, 4, 4],
        },
        {"embedding_size": 8, "hidden_sizes": [16, 32, 64], "depths": [1, 1, 1], "num_groups": 4},
        side=64,
    ),
    # Intel/dpt-hybrid-midas (MiDaS v3.0 DPT-Hybrid): ViT-B/16 on BiT-R50 stages 1-3, 384 px
    # (transformers' convert_dpt_hybrid_to_pytorch.py; the BiT fields are DPTConfig's defaults)
    "hybrid": DPTSize(
        "hybrid",
        _vit(768, 12, 12, [2, 5, 8, 11], [256, 512, 768, 768]),
        {"embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 9]},
    ),
    "tiny-beit": DPTSize(
        "beit",
        {
            "neck_hidden_sizes": [8, 16, 32, 32],
            "fusion_hidden_size": 16,
            "initializer_range": TINY_INIT,
        },
        beit_backbone(
            32, 4, 2, 64, [1, 2, 3, 4], intermediate_size=64, initializer_range=TINY_INIT
        ),
        side=64,
        keep_aspect=True,
    ),
    # Intel/dpt-beit-large-512, -large-384, -base-384 (MiDaS v3.1 BEiT-L/16, BEiT-B/16)
    "beit-large-512": DPTSize(
        "beit",
        {"neck_hidden_sizes": [256, 512, 1024, 1024]},
        beit_backbone(1024, 24, 16, 512, [6, 12, 18, 24]),
        side=512,
        keep_aspect=True,
    ),
    "beit-large-384": DPTSize(
        "beit",
        {"neck_hidden_sizes": [256, 512, 1024, 1024]},
        beit_backbone(1024, 24, 16, 384, [6, 12, 18, 24]),
        keep_aspect=True,
    ),
    "beit-base-384": DPTSize(
        "beit",
        {"neck_hidden_sizes": [96, 192, 384, 768]},
        beit_backbone(768, 12, 12, 384, [3, 6, 9, 12]),
        keep_aspect=True,
    ),
    "tiny-swinv2": DPTSize(
        "swinv2",
        {
            "neck_hidden_sizes": [8, 16, 32, 64],
            "fusion_hidden_size": 16,
            "initializer_range": TINY_INIT,
        },
        {**_swinv2(64, 8, [1, 1, 1, 1], [1, 2, 4, 8], 4, OWN), "initializer_range": TINY_INIT},
        side=64,
        keep_aspect=True,
    ),
    # Intel/dpt-swinv2-tiny-256, -base-384, -large-384 (MiDaS v3.1 Swin2-T/B/L); the tiny one
    # is the window-16 Swin V2-T (as MiDaS' swin2.py), with no pretrained window
    "swinv2-tiny-256": DPTSize(
        "swinv2",
        {"neck_hidden_sizes": [96, 192, 384, 768]},
        _swinv2(256, 96, [2, 2, 6, 2], [3, 6, 12, 24], 16, OWN),
        side=256,
        keep_aspect=True,
    ),
    "swinv2-base-384": DPTSize(
        "swinv2",
        {"neck_hidden_sizes": [128, 256, 512, 1024]},
        _swinv2(384, 128, [2, 2, 18, 2], [4, 8, 16, 32], 24, W22K),
        keep_aspect=True,
    ),
    "swinv2-large-384": DPTSize(
        "swinv2",
        {"neck_hidden_sizes": [192, 384, 768, 1536]},
        _swinv2(384, 192, [2, 2, 18, 2], [6, 12, 24, 48], 24, W22K),
        keep_aspect=True,
    ),
}


def dpt_size(size: str) -> DPTSize:
    """The `DPTSize` named `size`, or a `ValueError` naming the valid ones."""
    if size not in DPT_SIZES:
        raise ValueError(f"dpt has no size {size!r}; valid: {', '.join(DPT_SIZES)}")
    return DPT_SIZES[size]


def dpt_config(size: str) -> Any:
    """The `DPTConfig` of `size` (`DPT_SIZES`), its backbone's config included."""
    import transformers as T

    spec = dpt_size(size)
    if spec.family == "vit":  # patch 16, 384 px, projected readout (DPTConfig's own encoder)
        return T.DPTConfig(
            **spec.dpt, image_size=384, patch_size=16, readout_type="project", head_in_index=-1
        )
    if spec.family == "hybrid":
        bit = T.BitConfig(
            layer_type="bottleneck",
            global_padding="same",
            embedding_dynamic_padding=True,
            out_features=["stage1", "stage2", "stage3"],
            **spec.backbone,
        )
        return T.DPTConfig(
            **spec.dpt,
            is_hybrid=True,
            backbone_config=bit,
            reassemble_factors=[1, 1, 1, 0.5],
            readout_type="project",
        )
    backbone = (T.BeitConfig if spec.family == "beit" else T.Swinv2Config)(**spec.backbone)
    return T.DPTConfig(backbone_config=backbone, **spec.dpt)


def write_dpt(out_dir: Path | str, size: str, seed: int = 0) -> Path:
    """Save a randomly initialised `DPTForDepthEstimation` of `size` (`DPT_SIZES`) to `out_dir`
    like the hub's checkpoints: weights, config and `DPTImageProcessor` (the size's side, mean and
    std 0.5, multiple of 32), loadable with `from_pretrained`. The last ReLU's input is lifted
    (`lift_final_relu`) so the map is not mostly zeros. The same size and seed write the same
    bytes; torch's global generator is left as it was."""
    from transformers import DPTForDepthEstimation

    out_dir = Path(out_dir)
    spec = dpt_size(size)
    config = dpt_config(size)
    with seeded(seed):
        model = DPTForDepthEstimation(config).eval()
        side = spec.side if spec.family == "hybrid" else 224  # hybrid runs at its own size only
        lift_final_relu(model, model.head.head[-2], side=side)
    model.save_pretrained(out_dir)
    save_dpt_processor(out_dir, spec.side, DPT_MULTIPLE, spec.keep_aspect, HALF, HALF)
    return out_dir
