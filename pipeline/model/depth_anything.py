"""The Depth Anything V2 architecture at the sizes the project builds randomly initialised:
the tiny teacher and student of the tests and the demo, and the full-size models of the
benchmarks (`reference/teachers.md`). Shared by `labelgen` (teachers) and `student` (students)."""

from __future__ import annotations

from typing import Any

# name -> (hidden, layers, heads, out_indices, neck_hidden_sizes, fusion_hidden_size)
SIZES: dict[str, tuple[int, int, int, list[int], list[int], int]] = {
    "tiny": (32, 4, 2, [1, 2, 3, 4], [8, 16, 32, 32], 16),
    "small": (384, 12, 6, [3, 6, 9, 12], [48, 96, 192, 384], 64),
    "large": (1024, 24, 16, [5, 12, 18, 24], [256, 512, 1024, 1024], 256),
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
