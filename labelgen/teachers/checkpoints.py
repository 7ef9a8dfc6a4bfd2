"""Randomly initialised checkpoints of the real teacher architectures, at every size the project
builds: tiny ones for tests and the demo, full-size ones for benchmarks.

`write_checkpoint(adapter, DIR, size, seed)` saves one with `save_pretrained` (plus its image
processor, scheduler, tokenizer or empty-prompt embedding); the normal adapter then loads DIR
through the same `from_pretrained` path a real checkpoint takes. Same size and seed, same bytes.
`write_tiny_checkpoint` is the tiny one (`labelgen tiny-checkpoint`). Random teachers give
near-degenerate maps: good for shapes, kinds, flags and throughput, not for depth.

Depth Anything V2 (also the `hf` adapter's test model) is written by
`pipeline.model.depth_anything.write_depth_anything` and every DPT family (`dpt`: plain ViT,
hybrid, BEiT, Swin V2; `DPT_SIZES`) by `pipeline.model.dpt_families.write_dpt`, both shared with
the student; the metric ones (Depth Anything V2 metric as `depth-anything-v2` sizes such as
`tiny-metric-indoor`, ZoeDepth, Depth Pro) by `pipeline.model.metric`; this module has the other
architectures, each with a table of sizes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labelgen.teachers.genpercept import CONFIG_FILE, EMBEDDING_FILE, EMBEDDING_KEY
from pipeline.model import depth_anything
from pipeline.model.depth_anything import write_depth_anything
from pipeline.model.dpt_families import DPT_SIZES, dpt_config, write_dpt  # noqa: F401 (dpt_config)
from pipeline.model.metric import (
    DA_METRIC_SIZES,
    DEPTH_PRO_SIZES,
    ZOEDEPTH_SIZES,
    sizes_of,
    write_depth_anything_metric,
    write_depth_pro,
    write_zoedepth,
)
from pipeline.model.random_init import seeded
from pipeline.toolkit.atomic import follow_umask


@dataclass(frozen=True)
class DiffusionSize:
    """The Stable Diffusion parts GenPercept and Marigold are built from, at one size."""

    unet: dict[str, Any]
    """`UNet2DConditionModel` arguments, input channels and cross-attention width aside."""
    vae: dict[str, Any]
    """`AutoencoderKL` arguments; 4 levels, so the latent factor is 8 as in Stable Diffusion."""
    text: dict[str, Any]
    """`CLIPTextConfig` arguments, vocabulary and width aside."""
    width: int
    """Width of the text embedding the UNet attends to (cross-attention dim)."""
    marigold_resolution: int
    """Marigold's default processing resolution (long side)."""


DIFFUSION_SIZES: dict[str, DiffusionSize] = {
    "tiny": DiffusionSize(
        # two levels, cross-attention only at the low resolution
        unet={
            "sample_size": 64,
            "block_out_channels": (16, 32),
            "layers_per_block": 1,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": 2,
            "norm_num_groups": 8,
        },
        vae={
            "block_out_channels": (4, 8, 8, 16),
            "layers_per_block": 1,
            "norm_num_groups": 4,
            "sample_size": 64,
        },
        text={
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "projection_dim": 32,
        },
        width=32,
        marigold_resolution=560,
    ),
    "full": DiffusionSize(  # Stable Diffusion 2.1 (UNet, VAE, OpenCLIP ViT-H text encoder)
        unet={
            "sample_size": 96,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            "attention_head_dim": (5, 10, 20, 20),
            "use_linear_projection": True,
        },
        vae={"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "sample_size": 768},
        text={
            "intermediate_size": 4096,
            "num_hidden_layers": 23,
            "num_attention_heads": 16,
            "hidden_act": "gelu",
            "projection_dim": 512,
        },
        width=1024,
        marigold_resolution=768,
    ),
}


def _sizes(table: dict[str, Any], size: str, what: str) -> Any:
    if size not in table:
        raise ValueError(f"{what} has no size {size!r}; valid: {', '.join(table)}")
    return table[size]


def diffusion_unet(size: str, in_channels: int):
    """The `UNet2DConditionModel` of `size` (`DIFFUSION_SIZES`) with `in_channels` inputs."""
    from diffusers import UNet2DConditionModel

    parts = _sizes(DIFFUSION_SIZES, size, "a diffusion teacher")
    return UNet2DConditionModel(
        in_channels=in_channels, out_channels=4, cross_attention_dim=parts.width, **parts.unet
    ).eval()


def diffusion_vae(size: str):
    """The `AutoencoderKL` of `size`."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        **_sizes(DIFFUSION_SIZES, size, "a diffusion teacher").vae,
    ).eval()


def clip_tokenizer():
    """An offline `CLIPTokenizer` with a 54-entry vocabulary (specials + a-z): the empty prompt
    is all the teachers encode, so every size uses it."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def clip_text_encoder(size: str, vocab_size: int):
    """The `CLIPTextModel` of `size` over a `vocab_size` vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    parts = _sizes(DIFFUSION_SIZES, size, "a diffusion teacher")
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=parts.width,
        **parts.text,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def write_genpercept(out_dir: Path, size: str, seed: int = 0) -> None:
    """GenPercept of `size` (`DIFFUSION_SIZES`): `unet/` (4 input channels), `vae/`, a random
    2-token empty-prompt embedding and `genpercept.json` (disparity)."""
    from safetensors.torch import save_file

    with seeded(seed):
        unet = diffusion_unet(size, 4)
        vae = diffusion_vae(size)
        embedding = torch.randn(1, 2, unet.config.cross_attention_dim)
    unet.save_pretrained(out_dir / "unet")
    vae.save_pretrained(out_dir / "vae")
    save_file({EMBEDDING_KEY: embedding.contiguous()}, str(out_dir / EMBEDDING_FILE))
    (out_dir / CONFIG_FILE).write_text(json.dumps({"kind": "disparity"}, indent=2) + "\n")


def write_marigold(out_dir: Path, size: str, seed: int = 0) -> None:
    """A `MarigoldDepthPipeline` of `size` (`DIFFUSION_SIZES`): depth, 1 step, v-prediction,
    trailing DDIM, UNet with 8 input channels (image and noise latents)."""
    from diffusers import DDIMScheduler, MarigoldDepthPipeline

    tokenizer = clip_tokenizer()
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
    with seeded(seed):
        pipe = MarigoldDepthPipeline(
            unet=diffusion_unet(size, 8),
            vae=diffusion_vae(size),
            scheduler=scheduler,
            text_encoder=clip_text_encoder(size, len(tokenizer)),
            tokenizer=tokenizer,
            prediction_type="depth",
            default_denoising_steps=1,
            default_processing_resolution=DIFFUSION_SIZES[size].marigold_resolution,
        )
    pipe.save_pretrained(out_dir)


def write_any_depth_anything(out_dir: Path, size: str, seed: int = 0) -> Path:
    """A relative Depth Anything V2 (`SIZES`) or a metric one (`DA_METRIC_SIZES`)."""
    if size in DA_METRIC_SIZES:
        return write_depth_anything_metric(out_dir, size, seed)
    return write_depth_anything(out_dir, size, seed)


# adapter -> (writer(out_dir, size, seed), its sizes)
WRITERS: dict[str, tuple[Callable[[Path, str, int], Any], tuple[str, ...]]] = {
    "depth-anything-v2": (
        write_any_depth_anything,
        tuple(depth_anything.SIZES) + tuple(DA_METRIC_SIZES),
    ),
    "zoedepth": (write_zoedepth, sizes_of(ZOEDEPTH_SIZES)),
    "depth-pro": (write_depth_pro, sizes_of(DEPTH_PRO_SIZES)),
    "dpt": (write_dpt, tuple(DPT_SIZES)),
    "genpercept": (write_genpercept, tuple(DIFFUSION_SIZES)),
    "marigold": (write_marigold, tuple(DIFFUSION_SIZES)),
    # any AutoModelForDepthEstimation: a Depth Anything V2
    "hf": (write_depth_anything, tuple(depth_anything.SIZES)),
}
# Options a spec needs on top of NAME=ADAPTER:DIR to load such a checkpoint.
SPEC_OPTIONS = {"hf": ",kind=disparity"}


def tiny_spec(name: str, adapter: str, out_dir: Path | str) -> str:
    """The teacher spec string that loads a written checkpoint, e.g. `t=hf:DIR,kind=disparity`."""
    return f"{name}={adapter}:{out_dir}{SPEC_OPTIONS.get(adapter, '')}"


def write_checkpoint(adapter: str, out_dir: Path | str, size: str, seed: int = 0) -> Path:
    """Write a random checkpoint of `adapter` at `size` (`WRITERS`) into `out_dir` (created; must
    be empty or absent) and return it. Deterministic: the same size and seed write the same
    bytes; torch's global generator is left as it was."""
    if adapter not in WRITERS:
        valid = ", ".join(sorted(WRITERS))
        raise ValueError(f"no {size} checkpoint for adapter {adapter!r}; valid: {valid}")
    writer, sizes = WRITERS[adapter]
    if size not in sizes:
        raise ValueError(f"adapter {adapter!r} has no size {size!r}; valid: {', '.join(sizes)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; pass a new directory for the checkpoint")
    out_dir.mkdir(parents=True, exist_ok=True)
    writer(out_dir, size, seed)
    follow_umask(out_dir)  # safetensors writes 0600: readable as the umask says, like a download
    return out_dir


def write_tiny_checkpoint(adapter: str, out_dir: Path | str, seed: int = 0) -> Path:
    """`write_checkpoint(adapter, out_dir, "tiny", seed)`: the small model of the real
    architecture that tests, the demo and `labelgen tiny-checkpoint` use."""
    return write_checkpoint(adapter, out_dir, "tiny", seed)
