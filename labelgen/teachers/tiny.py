"""Tiny randomly initialised checkpoints of the real teacher architectures, for tests and demos.

`write_tiny_checkpoint(adapter, DIR)` saves one with `save_pretrained` (plus its image processor,
scheduler, tokenizer or empty-prompt embedding); the normal adapter then loads DIR through the
same `from_pretrained` path a real checkpoint takes. Same seed, same bytes. Random teachers give
near-degenerate maps: good for shapes, kinds, flags and throughput plumbing, not for depth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from labelgen.teachers.base import IMAGENET_MEAN, IMAGENET_STD

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2}
TINY_NECK = {"neck_hidden_sizes": [8, 16, 32, 32], "fusion_hidden_size": 16}
TINY_CLIP_DIM = 32
# Larger than the default 0.02 so activations survive the depth of the network; with
# `_lift_final_relu` the random teachers give image-dependent maps with few exact zeros.
TINY_INIT_RANGE = 0.1


def _lift_final_relu(model: torch.nn.Module, conv: torch.nn.Conv2d, quantile: float = 0.05) -> None:
    """Shift the bias of the conv before the final ReLU so ~95% of its outputs are positive on a
    fixed random image (random-init heads otherwise output mostly exact zeros)."""
    seen: dict[str, torch.Tensor] = {}
    hook = conv.register_forward_hook(lambda mod, args, out: seen.setdefault("out", out))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model(pixel_values=torch.randn(1, 3, 224, 224, generator=generator))
        hook.remove()
        conv.bias -= torch.quantile(seen["out"].flatten().float(), quantile)


def _save_processor(out_dir: Path, size: int, multiple: int, keep_aspect: bool, mean, std) -> None:
    from transformers import DPTImageProcessorPil

    processor = DPTImageProcessorPil(
        size={"height": size, "width": size},
        keep_aspect_ratio=keep_aspect,
        ensure_multiple_of=multiple,
        image_mean=list(mean),
        image_std=list(std),
        do_pad=False,
    )
    processor.save_pretrained(out_dir)


def tiny_depth_anything(out_dir: Path) -> None:
    """Depth Anything V2 layout: hidden 32, 4 layers, 2 heads, neck (8,16,32,32), fusion 16."""
    from transformers import DepthAnythingForDepthEstimation

    from pipeline.model.depth_anything import depth_anything_config

    config = depth_anything_config("tiny", head_hidden_size=8, initializer_range=TINY_INIT_RANGE)
    model = DepthAnythingForDepthEstimation(config).eval()
    _lift_final_relu(model, model.head.conv3)
    model.save_pretrained(out_dir)
    _save_processor(out_dir, 518, 14, True, IMAGENET_MEAN, IMAGENET_STD)


def tiny_dpt(out_dir: Path) -> None:
    """DPT-Large (MiDaS v3.0) layout with a plain ViT: hidden 32, 4 layers, patch 16."""
    from transformers import DPTConfig, DPTForDepthEstimation

    config = DPTConfig(
        **TINY_VIT,
        intermediate_size=64,
        image_size=384,
        patch_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        readout_type="project",
        head_in_index=-1,
        initializer_range=TINY_INIT_RANGE,
        **TINY_NECK,
    )
    model = DPTForDepthEstimation(config).eval()
    _lift_final_relu(model, model.head.head[-2])
    model.save_pretrained(out_dir)
    _save_processor(out_dir, 384, 32, False, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def tiny_unet(in_channels: int):
    """A two-level `UNet2DConditionModel` (cross-attention only at the low resolution)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_CLIP_DIM,
        attention_head_dim=2,
        norm_num_groups=8,
    ).eval()


def tiny_vae():
    """An `AutoencoderKL` with 4 levels, so the latent factor is 8 as in Stable Diffusion."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(4, 8, 8, 16),
        layers_per_block=1,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=4,
        sample_size=64,
    ).eval()


def tiny_genpercept(out_dir: Path) -> None:
    """`unet/`, `vae/`, a random 2-token empty-prompt embedding and `genpercept.json`."""
    from safetensors.torch import save_file

    from labelgen.teachers.genpercept import CONFIG_FILE, EMBEDDING_FILE, EMBEDDING_KEY

    tiny_unet(4).save_pretrained(out_dir / "unet")
    tiny_vae().save_pretrained(out_dir / "vae")
    embedding = torch.randn(1, 2, TINY_CLIP_DIM)
    save_file({EMBEDDING_KEY: embedding.contiguous()}, str(out_dir / EMBEDDING_FILE))
    (out_dir / CONFIG_FILE).write_text(json.dumps({"kind": "disparity"}, indent=2) + "\n")


def tiny_clip_tokenizer():
    """An offline `CLIPTokenizer` with a 54-entry vocabulary (specials + a-z)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def tiny_clip_text_encoder(vocab_size: int):
    """A one-layer `CLIPTextModel` with hidden size 32."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TINY_CLIP_DIM,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=TINY_CLIP_DIM,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def tiny_marigold(out_dir: Path) -> None:
    """A `MarigoldDepthPipeline` (depth, 1 step, processing resolution 560) with tiny parts."""
    from diffusers import DDIMScheduler, MarigoldDepthPipeline

    tokenizer = tiny_clip_tokenizer()
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
    )
    pipe = MarigoldDepthPipeline(
        unet=tiny_unet(8),
        vae=tiny_vae(),
        scheduler=scheduler,
        text_encoder=tiny_clip_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        prediction_type="depth",
        default_denoising_steps=1,
        default_processing_resolution=560,
    )
    pipe.save_pretrained(out_dir)


TINY_WRITERS: dict[str, Callable[[Path], None]] = {
    "depth-anything-v2": tiny_depth_anything,
    "dpt": tiny_dpt,
    "genpercept": tiny_genpercept,
    "marigold": tiny_marigold,
    "hf": tiny_depth_anything,  # any AutoModelForDepthEstimation: a tiny Depth Anything
}
# Options a spec needs on top of NAME=ADAPTER:DIR to load the tiny checkpoint.
TINY_SPEC_OPTIONS = {"hf": ",kind=disparity"}


def tiny_spec(name: str, adapter: str, out_dir: Path | str) -> str:
    """The teacher spec string that loads a tiny checkpoint, e.g. `t=hf:DIR,kind=disparity`."""
    return f"{name}={adapter}:{out_dir}{TINY_SPEC_OPTIONS.get(adapter, '')}"


def write_tiny_checkpoint(adapter: str, out_dir: Path | str, seed: int = 0) -> Path:
    """Write a tiny random checkpoint for `adapter` into `out_dir` (created; must be empty or
    absent) and return it. Deterministic: the same seed writes the same bytes."""
    if adapter not in TINY_WRITERS:
        valid = ", ".join(sorted(TINY_WRITERS))
        raise ValueError(f"no tiny checkpoint for adapter {adapter!r}; valid: {valid}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; pass a new directory for the checkpoint")
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        TINY_WRITERS[adapter](out_dir)
    return out_dir
