"""Shared helpers of the loss modules: shape checks, validity masks, the normalization registry.

Shapes: a disparity map is `[B, H, W]` or `[B, 1, H, W]`; every loss works on `[B, H, W]` inside.
"""

from __future__ import annotations

import torch
from torch import Tensor

NORMALIZATIONS: dict[str, tuple[int, ...]] = {
    "global": (1,),
    "hybrid": (1, 2, 4),
    "local": (4,),
    "none": (),
}
"""Normalization name → the levels S of its contexts (S equal ranges of the target's values).

`global`: one context per image (MiDaS-style median/MAD). `hybrid`: S = 1, 2, 4 (7 contexts; each
valid pixel belongs to 3). `local`: S = 4 only. `none`: no normalization, raw `|p - t|`.
"""

EPS = 1e-6
"""Added to the mean absolute deviation so that flat maps give finite normalized values."""


def levels_for(norm: str) -> tuple[int, ...]:
    """The context levels of a normalization name; ValueError listing the valid names."""
    if norm not in NORMALIZATIONS:
        valid = ", ".join(sorted(NORMALIZATIONS))
        raise ValueError(f"norm must be one of {valid}; got {norm!r}")
    return NORMALIZATIONS[norm]


def as_bhw(x: Tensor, name: str) -> Tensor:
    """`[B, H, W]` view of a `[B, H, W]` or `[B, 1, H, W]` tensor; ValueError naming `name`."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"{name} must be [B, H, W] or [B, 1, H, W], got {tuple(x.shape)}")
        return x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"{name} must be [B, H, W] or [B, 1, H, W], got {tuple(x.shape)}")
    return x


def prepare(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Validate shapes; return `(pred, target, valid)` as `[B, H, W]`.

    `valid = mask & isfinite(target) & isfinite(pred)` (mask None = all pixels). Invalid pixels of
    `pred` and `target` are replaced by 0 (through `torch.where`, so no NaN reaches a gradient).
    Both are cast to `compute_dtype` (at least float32: bf16/fp16 from autocast are promoted).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if not pred.is_floating_point() or not target.is_floating_point():
        raise ValueError("pred and target must be floating point tensors")
    p, t = as_bhw(pred, "pred"), as_bhw(target, "target")
    valid = torch.isfinite(t) & torch.isfinite(p)
    if mask is not None:
        if mask.shape != pred.shape:
            raise ValueError(
                f"mask must have the shape of pred {tuple(pred.shape)}, got {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
        valid = valid & as_bhw(mask, "mask")
    dtype = compute_dtype(pred, target)
    zero = torch.zeros((), dtype=dtype, device=p.device)
    p = torch.where(valid, p.to(dtype), zero)
    t = torch.where(valid, t.to(dtype), zero)
    return p, t, valid


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype losses compute in: the promoted dtype of the inputs, at least float32."""
    dtype = torch.float32
    for x in tensors:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def range_edges(target: Tensor, valid: Tensor, s: int) -> Tensor:
    """Inner edges `[B, s-1]` splitting each image's valid target range into `s` equal ranges.

    `edge_k = tmin + (tmax - tmin) * k / s`. Pixel bin = number of inner edges ≤ its value, so the
    top range is closed (the maximum pixel is in bin s-1). With these formulas the S = 2 edge equals
    the middle S = 4 edge exactly, so the levels nest. Images without a valid pixel get edges 0.
    """
    flat_t, flat_v = target.flatten(1), valid.flatten(1)
    inf = torch.tensor(float("inf"), dtype=target.dtype, device=target.device)
    tmin = torch.where(flat_v, flat_t, inf).amin(1)
    tmax = torch.where(flat_v, flat_t, -inf).amax(1)
    empty = ~flat_v.any(1)
    tmin = torch.where(empty, 0.0, tmin)
    tmax = torch.where(empty, 0.0, tmax)
    k = torch.arange(1, s, dtype=target.dtype, device=target.device)
    return tmin[:, None] + (tmax - tmin)[:, None] * k / s
