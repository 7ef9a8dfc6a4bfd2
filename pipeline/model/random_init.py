"""How the project makes randomly initialised checkpoints of real architectures (tests, the demo,
benchmarks): seeded construction, a depth head that does not start at exact zeros, and the
image processor a DPT-family checkpoint ships with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded with `seed`, and give the caller's
    generator state back afterwards (writing a checkpoint leaves the global RNG alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def lift_final_relu(
    model: torch.nn.Module, conv: torch.nn.Conv2d, quantile: float = 0.05, side: int = 224
) -> None:
    """Shift the bias of the conv before the final ReLU so ~95% of its outputs are positive on a
    fixed random `side`×`side` image (random-init heads otherwise output mostly exact zeros;
    DPT-Hybrid only runs at its own `image_size`)."""
    out = conv_output_on_noise(model, conv, 1, side)
    with torch.no_grad():
        conv.bias -= torch.quantile(out, quantile)


def conv_output_on_noise(
    model: torch.nn.Module, conv: torch.nn.Conv2d, images: int, side: int
) -> torch.Tensor:
    """`conv`'s output values (flat, float32) when `model` runs on `images` fixed random
    `side`x`side` images (seed 0), without gradient."""
    seen: dict[str, torch.Tensor] = {}
    hook = conv.register_forward_hook(lambda mod, args, out: seen.setdefault("out", out))
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            model(pixel_values=torch.randn(images, 3, side, side, generator=generator))
    finally:
        hook.remove()
    return seen["out"].flatten().float()


def save_dpt_processor(
    out_dir: Path,
    size: int,
    multiple: int,
    keep_aspect: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """Save the `DPTImageProcessor` (PIL backend) of a Depth Anything or DPT checkpoint: resize to
    `size` (the short side when `keep_aspect`), sides multiples of `multiple`, no padding."""
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
