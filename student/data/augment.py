"""Training-time augmentation settings and the photometric jitter of the student's input.

Only `image_aug` (what the student sees) is jittered; labels and the clean `image` never are.
The horizontal flip is geometric: it is applied to the image and all labels together
(`samples.py`), so `flip_p` lives here but acts there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# RGB -> YIQ (NTSC); a hue shift is a rotation of the (I, Q) chroma plane.
_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]],
    dtype=torch.float32,
)
_RGB = torch.linalg.inv(_YIQ)
_GRAY = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)


@dataclass(frozen=True)
class AugmentSettings:
    """Augmentation strengths; a zero strength (or probability) turns that part off."""

    flip_p: float = 0.5
    """Probability of a horizontal flip of image and labels together."""
    jitter_p: float = 0.8
    """Probability of applying the colour jitter to a sample (in a random order of the four)."""
    brightness: float = 0.2
    """Brightness factor drawn uniformly in [1 − b, 1 + b]."""
    contrast: float = 0.2
    """Contrast factor in [1 − c, 1 + c] (blend with the mean grey level)."""
    saturation: float = 0.2
    """Saturation factor in [1 − s, 1 + s] (blend with the grey image)."""
    hue: float = 0.05
    """Hue shift in [−h, h] turns (≤ 0.5), a rotation of the YIQ chroma plane."""
    blur_p: float = 0.2
    """Probability of a Gaussian blur (after the jitter)."""
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    """Range of the blur's standard deviation, in output pixels."""

    def __post_init__(self) -> None:
        for name in ("flip_p", "jitter_p", "blur_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be a probability in [0, 1]")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1)")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError("augment.hue must be in [0, 0.5] turns")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError("augment.blur_sigma must be (lo, hi) with 0 < lo ≤ hi")

    @classmethod
    def none(cls) -> AugmentSettings:
        """No flip, no jitter, no blur: `image_aug` equals `image`."""
        return cls(flip_p=0.0, jitter_p=0.0, blur_p=0.0)


def _gray(img: Tensor) -> Tensor:
    """Luma [1, H, W] of an RGB image [3, H, W]."""
    return torch.tensordot(_GRAY, img, dims=([0], [0])).unsqueeze(0)


def _hue(img: Tensor, turns: float) -> Tensor:
    angle = 2 * math.pi * turns
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float32)
    matrix = _RGB @ rot @ _YIQ
    return torch.tensordot(matrix, img, dims=([1], [0]))


def _factor(rng: np.random.Generator, strength: float) -> float:
    return float(rng.uniform(1.0 - strength, 1.0 + strength))


def color_jitter(img: Tensor, settings: AugmentSettings, rng: np.random.Generator) -> Tensor:
    """Brightness, contrast, saturation and hue in a random order; [3, H, W] in [0, 1]."""
    for op in rng.permutation(4):
        if op == 0 and settings.brightness > 0:
            img = img * _factor(rng, settings.brightness)
        elif op == 1 and settings.contrast > 0:
            mean = _gray(img).mean()
            img = (img - mean) * _factor(rng, settings.contrast) + mean
        elif op == 2 and settings.saturation > 0:
            gray = _gray(img)
            img = (img - gray) * _factor(rng, settings.saturation) + gray
        elif op == 3 and settings.hue > 0:
            img = _hue(img, float(rng.uniform(-settings.hue, settings.hue)))
        img = img.clamp(0.0, 1.0)
    return img


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [3, H, W] with reflect padding (radius ceil(3σ))."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, img.shape[-1] - 1, img.shape[-2] - 1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    out = img.unsqueeze(0)
    out = F.pad(out, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return out[0]


def photometric(img: Tensor, settings: AugmentSettings, rng: np.random.Generator) -> Tensor:
    """The student's input: `img` [3, H, W] float32 in [0, 1], jittered and maybe blurred.

    Draws come from `rng` only, in a fixed sequence, so a seeded generator reproduces the result.
    Returns a new tensor; `img` is not modified.
    """
    out = img
    if rng.random() < settings.jitter_p:
        out = color_jitter(out, settings, rng)
    if rng.random() < settings.blur_p:
        out = gaussian_blur(out, float(rng.uniform(*settings.blur_sigma)))
    return out.clone() if out is img else out.contiguous()
