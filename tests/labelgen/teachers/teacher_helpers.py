"""Constants and inputs shared by the teacher tests (importable by name, unlike conftest)."""

from __future__ import annotations

import torch

ADAPTERS = ["depth-anything-v2", "dpt", "genpercept", "marigold", "hf"]
EXPECTED_KIND = {
    "depth-anything-v2": "disparity",
    "dpt": "disparity",
    "genpercept": "disparity",  # the tiny genpercept.json says disparity
    "marigold": "depth",
    "hf": "disparity",  # declared in the tiny spec
}


def images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """`[b,3,h,w]` smooth-ish random RGB in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(b, 3, max(1, h // 8), max(1, w // 8), generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear").clamp(0, 1)
