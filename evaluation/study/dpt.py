"""The world study's cross-architecture pair: a DPT student (MiDaS v3.0's plain-ViT DPT) that
learns from the Depth Anything teacher t1, Table 2's `base` and `both` configurations.

Its initialisation is `t2-dpt`: a DPT with t2's ViT (width, depth, heads, MLP ratio, which layers
feed the head, neck and fusion widths, initializer range: `pipeline.model.depth_anything.SIZES`
and `RANDOM_INIT` of the scale's second teacher size), trained exactly as t2 is (same split of
exact depth, recipe, steps, learning rate and seed), so the DPT students start where the Depth
Anything students start, in another architecture. What differs is the architecture's own: patch
16 instead of 14 with the side rounded up to a multiple of 32 (the same token grid at the study's
sides: 56 → 64 and 112 → 128 px give 4² and 8² tokens, as 56 and 112 px do at patch 14), a
projected readout token, DPT's head, mean and std 0.5, and square inputs only (a test image is
squashed to its short side, as the checkpoint's image processor does). Its position embeddings
are sized for the study's side (`image_size`), so nothing is interpolated there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.model.depth_anything import RANDOM_INIT, SIZES
from pipeline.model.random_init import lift_final_relu, save_dpt_processor, seeded

DPT_INIT = "t2-dpt"
"""The pre-trained DPT the cross-architecture students start from (trained as t2 is)."""
MIRRORS = {DPT_INIT: 1}
"""Each pre-trained DPT -> the index of the teacher it is trained as (size, seed)."""
MULTIPLE = 32
HALF = (0.5, 0.5, 0.5)


def dpt_side(view: int) -> int:
    """The side a plain-ViT DPT computes at for `view`-sided views: rounded up to 32."""
    return -(-view // MULTIPLE) * MULTIPLE


def dpt_config(size: str, side: int) -> Any:
    """A plain-ViT `DPTConfig` with the ViT of Depth Anything's `size`, patch 16, `side` px."""
    from transformers import DPTConfig

    if size not in SIZES:
        raise ValueError(f"no DPT of Depth Anything's size {size!r}; sizes: {sorted(SIZES)}")
    hidden, layers, heads, indices, neck, fusion = SIZES[size]
    init = RANDOM_INIT.get(size, {}).get("initializer_range", 0.02)
    return DPTConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,  # DINOv2's MLP ratio
        backbone_out_indices=[i - 1 for i in indices],  # DINOv2 counts the stem as stage 0
        neck_hidden_sizes=neck,
        fusion_hidden_size=fusion,
        initializer_range=init,
        image_size=side,
        patch_size=16,
        readout_type="project",
        head_in_index=-1,
    )


def write_dpt_init(out: Path, size: str, seed: int, view: int) -> Path:
    """Save a random plain-ViT DPT of Depth Anything's `size` for `view`-sided views to `out`
    like a hub checkpoint (weights, config, image processor of its side, mean and std 0.5); the
    final ReLU's input lifted as every random checkpoint's. Written once: an existing `out` with
    a config is kept."""
    from transformers import DPTForDepthEstimation

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    side = dpt_side(view)
    with seeded(seed):
        model = DPTForDepthEstimation(dpt_config(size, side)).eval()
        lift_final_relu(model, model.head.head[-2], side=side)
    model.save_pretrained(out)
    save_dpt_processor(out, side, MULTIPLE, False, HALF, HALF)
    return out
