"""Randomly initialised checkpoints of the metric-depth architectures the teachers load: Depth
Anything V2 metric (`depth_estimation_type="metric"`, indoor `max_depth` 20 m, outdoor 80 m),
ZoeDepth (BEiT backbone, metric bins; `Intel/zoedepth-nyu-kitti` has two bin heads) and Depth Pro
(`apple/DepthPro-hf`: three DINOv2 encoders, a field-of-view head). Each is saved with
`save_pretrained` beside the image processor its hub checkpoint ships, and loads back with
`from_pretrained` as a user's checkpoint does. Tiny sizes are for tests (a CPU forward well under
a second); `full` mirrors the published configuration, for benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pipeline.model.depth_anything import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDOM_INIT,
    SIZES,
    depth_anything_config,
)
from pipeline.model.dpt_families import beit_backbone
from pipeline.model.random_init import conv_output_on_noise, save_dpt_processor, seeded

HALF = [0.5, 0.5, 0.5]  # ZoeDepth's and Depth Pro's processors normalize with mean = std = 0.5
MAX_DEPTH = {"indoor": 20, "outdoor": 80}  # Depth-Anything-V2-Metric-{Indoor,Outdoor}-*-hf

# `depth-anything-v2` sizes of the metric checkpoints: `tiny-metric-indoor`, `large-metric-outdoor`
DA_METRIC_SIZES: dict[str, tuple[str, int]] = {
    f"{size}-metric-{scene}": (size, depth)
    for size in ("tiny", "small", "large")
    for scene, depth in MAX_DEPTH.items()
}


def _sizes(table: dict[str, Any], size: str, what: str) -> Any:
    if size not in table:
        raise ValueError(f"{what} has no size {size!r}; valid: {', '.join(table)}")
    return table[size]


def write_depth_anything_metric(out_dir: Path | str, size: str, seed: int = 0) -> Path:
    """A metric Depth Anything V2 (`DA_METRIC_SIZES`): sigmoid head times `max_depth`, the
    DPT processor of the relative ones (short side 518, multiple of 14, ImageNet mean/std)."""
    from transformers import DepthAnythingForDepthEstimation

    base, max_depth = _sizes(DA_METRIC_SIZES, size, "a metric Depth Anything")
    head = {**RANDOM_INIT.get(base, {}), "depth_estimation_type": "metric", "max_depth": max_depth}
    with seeded(seed):
        model = DepthAnythingForDepthEstimation(depth_anything_config(base, **head)).eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    save_dpt_processor(out_dir, 518, 14, True, IMAGENET_MEAN, IMAGENET_STD)
    return out_dir


NYU_KITTI = [
    {"name": "nyu", "n_bins": 64, "min_depth": 0.001, "max_depth": 10.0},
    {"name": "kitti", "n_bins": 64, "min_depth": 0.001, "max_depth": 80.0},
]
# size -> (ZoeDepthConfig fields, BeitConfig fields, processor size (h, w))
ZOEDEPTH_SIZES: dict[str, tuple[dict[str, Any], dict[str, Any], tuple[int, int]]] = {
    # two bin heads as nyu-kitti; the router's width (128) and its 4 layers are fixed in
    # transformers
    "tiny": (
        {
            "neck_hidden_sizes": [8, 16, 32, 32],
            "fusion_hidden_size": 16,
            "bottleneck_features": 16,
            "bin_embedding_dim": 8,
            "num_relative_features": 8,
            "num_attractors": [4, 4, 2, 1],
            "bin_configurations": [{**c, "n_bins": 8} for c in NYU_KITTI],
            "num_patch_transformer_layers": 4,
            "patch_transformer_hidden_size": 128,
            "patch_transformer_intermediate_size": 32,
            "patch_transformer_num_attention_heads": 4,
            "initializer_range": 0.1,
        },
        beit_backbone(32, 4, 2, 64, [1, 2, 3, 4], intermediate_size=64, initializer_range=0.1),
        (64, 96),
    ),
    # Intel/zoedepth-nyu-kitti: BEiT-L/16 at 384, bins for NYU (10 m) and KITTI (80 m)
    "full": (
        {
            "neck_hidden_sizes": [256, 512, 1024, 1024],
            "bin_configurations": NYU_KITTI,
            "num_patch_transformer_layers": 4,
            "patch_transformer_hidden_size": 128,
            "patch_transformer_intermediate_size": 1024,
            "patch_transformer_num_attention_heads": 4,
        },
        beit_backbone(1024, 24, 16, 384, [6, 12, 18, 24]),
        (384, 512),
    ),
}


def zoedepth_config(size: str) -> Any:
    """The `ZoeDepthConfig` of `size` (`ZOEDEPTH_SIZES`)."""
    from transformers import BeitConfig, ZoeDepthConfig

    fields, backbone, _ = _sizes(ZOEDEPTH_SIZES, size, "zoedepth")
    return ZoeDepthConfig(backbone_config=BeitConfig(**backbone), **fields)


def write_zoedepth(out_dir: Path | str, size: str, seed: int = 0) -> Path:
    """A `ZoeDepthForDepthEstimation` of `size` and its `ZoeDepthImageProcessor` (reflect
    padding, keep-aspect resize to the size's (h, w), multiple of 32, bilinear, mean/std 0.5)."""
    from transformers import ZoeDepthForDepthEstimation, ZoeDepthImageProcessorPil

    config = zoedepth_config(size)
    with seeded(seed):
        model = ZoeDepthForDepthEstimation(config).eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    h, w = ZOEDEPTH_SIZES[size][2]
    processor = ZoeDepthImageProcessorPil(
        size={"height": h, "width": w},
        keep_aspect_ratio=True,
        ensure_multiple_of=32,
        do_pad=True,
        image_mean=HALF,
        image_std=HALF,
        resample=2,
    )
    processor.save_pretrained(out_dir)
    return out_dir


def _dinov2(hidden: int, layers: int, heads: int, patch: int, **more) -> dict[str, Any]:
    return {
        "model_type": "dinov2",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "patch_size": patch,
        **more,
    }


# size -> DepthProConfig fields (the encoders' configs as dicts; `patch_size` is the side of the
# windows the patch encoder sees, the processor's side is patch_size / 0.25)
DEPTH_PRO_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "patch_size": 32,
        "fusion_hidden_size": 16,
        "intermediate_hook_ids": [3, 1],
        "intermediate_feature_dims": [8, 8],
        "scaled_images_feature_dims": [16, 16, 8],
        "merge_padding_value": 1,
        "initializer_range": 0.1,
        **{
            f"{part}_model_config": _dinov2(32, 4, 2, 8, initializer_range=0.1)
            for part in ("image", "patch", "fov")
        },
    },
    # apple/DepthPro-hf: three DINOv2-L/16 at 384, 1536 px input
    "full": {
        "patch_size": 384,
        **{f"{part}_model_config": _dinov2(1024, 24, 16, 16) for part in ("image", "patch", "fov")},
    },
}


def depth_pro_config(size: str) -> Any:
    """The `DepthProConfig` of `size` (`DEPTH_PRO_SIZES`), with its field-of-view head."""
    from transformers import DepthProConfig

    fields = _sizes(DEPTH_PRO_SIZES, size, "depth-pro")
    fields = {k: dict(v) if isinstance(v, dict) else v for k, v in fields.items()}
    for part in ("image", "patch", "fov"):
        fields[f"{part}_model_config"]["image_size"] = fields["patch_size"]
    return DepthProConfig(use_fov_model=True, **fields)


def _affine_output(model: torch.nn.Module, conv: torch.nn.Conv2d, side: int, low, spread) -> None:
    """Scale and shift `conv`'s weights so its output on four fixed random images starts at `low`
    and spreads by `spread` (its minimum and median mapped there): a random head's raw outputs
    are otherwise in the thousands, or negative (exact zeros after a ReLU)."""
    out = conv_output_on_noise(model, conv, 4, side)
    with torch.no_grad():
        lo, mid = out.min(), out.median()
        scale = spread / (mid - lo).abs().clamp_min(1e-6)
        conv.weight *= scale
        conv.bias.copy_(conv.bias * scale + low - lo * scale)


def write_depth_pro(out_dir: Path | str, size: str, seed: int = 0) -> Path:
    """A `DepthProForDepthEstimation` of `size` with its field-of-view head, and the
    `preprocessor_config.json` of `DepthProImageProcessor` (written as data: that class needs
    torchvision): squash to a square of 4x the patch side, bilinear, mean/std 0.5. The random
    head is set to output canonical inverse depth around 0.1-0.4 and the field of view around
    60 degrees, so the metric depth of a random model is metres, not a saturated clamp."""
    from transformers import DepthProForDepthEstimation

    config = depth_pro_config(size)
    side = int(config.patch_size / min(config.scaled_images_ratios))
    with seeded(seed):
        model = DepthProForDepthEstimation(config).eval()
        if size.startswith("tiny"):
            _affine_output(model, model.head.layers[-2], side, 0.1, 0.2)
            _affine_output(model, model.fov_model.head.layers[-1], side, 50.0, 10.0)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor = {
        "image_processor_type": "DepthProImageProcessor",
        "do_resize": True,
        "size": {"height": side, "width": side},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": HALF,
        "image_std": HALF,
    }
    text = json.dumps(processor, indent=2, sort_keys=True) + "\n"
    (out_dir / "preprocessor_config.json").write_text(text)
    return out_dir


def sizes_of(table: dict[str, Any]) -> tuple[str, ...]:
    """The sizes of a table, the tiny one first."""
    return tuple(sorted(table, key=lambda s: (not s.startswith("tiny"), s)))


__all__ = [
    "DA_METRIC_SIZES",
    "DEPTH_PRO_SIZES",
    "SIZES",
    "ZOEDEPTH_SIZES",
    "depth_pro_config",
    "write_depth_anything_metric",
    "write_depth_pro",
    "write_zoedepth",
    "zoedepth_config",
]
