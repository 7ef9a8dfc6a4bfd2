"""The Depth Anything V2 architecture at the sizes the project builds, and randomly initialised
checkpoints of it: the tiny teacher and student of the tests and the demo, and the full-size
models of the benchmarks (`reference/teachers.md`). Shared by `labelgen` (teachers) and `student`
(students), so `write_depth_anything` is the one writer of a random Depth Anything checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.model.random_init import lift_final_relu, save_dpt_processor, seeded

# ImageNet statistics: the input normalization of DINOv2, hence of Depth Anything (and the
# default of image processors that name none).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CANONICAL_FOCAL = "canonical_focal_px"
"""The config field of a metric student trained on canonical depth: f_c, in pixels of the model's
input (depth in metres = its output × the input's focal length / f_c)."""

# name -> (hidden, layers, heads, out_indices, neck_hidden_sizes, fusion_hidden_size)
SIZES: dict[str, tuple[int, int, int, list[int], list[int], int]] = {
    "tiny": (32, 4, 2, [1, 2, 3, 4], [8, 16, 32, 32], 16),
    "mini": (64, 4, 2, [1, 2, 3, 4], [16, 32, 64, 64], 32),
    "small": (384, 12, 6, [3, 6, 9, 12], [48, 96, 192, 384], 64),
    "large": (1024, 24, 16, [5, 12, 18, 24], [256, 512, 1024, 1024], 256),
}
# What a random checkpoint of a size sets on top of its architecture: the tiny one has a narrow
# head and an initializer range larger than the default 0.02, so activations survive the depth of
# the network and a random model's maps depend on the image; `mini` (the small ViT of the world
# study, trained from scratch) keeps its head but needs the larger range too. The others are as
# published.
RANDOM_INIT: dict[str, dict[str, Any]] = {
    "tiny": {"head_hidden_size": 8, "initializer_range": 0.1},
    "mini": {"initializer_range": 0.1},  # at 0.02 its outputs are ~1e-6: gradients underflow
}


def depth_anything_config(size: str, **head: Any) -> Any:
    """A `DepthAnythingConfig` of `size` (DINOv2 backbone, patch 14, 518 px, MLP ratio 4);
    `head` sets other `DepthAnythingConfig` fields, `initializer_range` for the backbone too."""
    from transformers import DepthAnythingConfig, Dinov2Config

    if size not in SIZES:
        raise ValueError(f"Depth Anything size {size!r} is not one of {sorted(SIZES)}")
    hidden, layers, heads, indices, neck, fusion = SIZES[size]
    init = {k: v for k, v in head.items() if k == "initializer_range"}
    backbone = Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        patch_size=14,
        image_size=518,
        out_indices=indices,
        apply_layernorm=True,
        reshape_hidden_states=False,
        **init,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=hidden,
        neck_hidden_sizes=neck,
        fusion_hidden_size=fusion,
        **head,
    )


def write_depth_anything(out_dir: Path | str, size: str, seed: int = 0) -> Path:
    """Save a randomly initialised Depth Anything V2 of `size` (`SIZES`) to `out_dir` like the
    hub's checkpoints: weights, config and image processor (short side 518, multiple of 14,
    ImageNet mean/std), loadable with `from_pretrained`. The same size and seed write the same
    bytes; torch's global generator is left as it was."""
    from transformers import DepthAnythingForDepthEstimation

    out_dir = Path(out_dir)
    config = depth_anything_config(size, **RANDOM_INIT.get(size, {}))
    with seeded(seed):
        model = DepthAnythingForDepthEstimation(config).eval()
        lift_final_relu(model, model.head.conv3)
    model.save_pretrained(out_dir)
    save_dpt_processor(out_dir, 518, 14, True, IMAGENET_MEAN, IMAGENET_STD)
    return out_dir


def is_metric(config: Any) -> bool:
    """True for a metric Depth Anything (`depth_estimation_type: "metric"`)."""
    return config is not None and getattr(config, "depth_estimation_type", None) == "metric"


def canonical_focal(config: Any) -> float | None:
    """f_c of a metric student's checkpoint (`CANONICAL_FOCAL` in a metric config), else None."""
    value = getattr(config, CANONICAL_FOCAL, None) if is_metric(config) else None
    return None if value is None else float(value)
