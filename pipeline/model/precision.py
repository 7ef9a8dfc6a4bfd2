"""Precisions: the names every `--precision` takes, and keeping one submodule in float32.

`PRECISIONS` maps `bf16`, `fp16`, `fp32` to their torch dtypes; `check_precision` is the one check.

Depth heads end in a few convolutions at the output resolution. Run in bf16 they round every
predicted value to 8 bits of mantissa (steps of 0.4%), which shows as banding in labels and raises
the floor of normalized and gradient losses several-fold, for a small share of the model's FLOPs.
`keep_float32(model.head)` makes the head compute in float32 whether the model was cast to bf16
(teachers) or runs under autocast (the student): its weights become float32 and its forward runs
outside autocast on float32 inputs. Parameter names do not change, so saving and loading are
unaffected.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from pipeline.toolkit.launch import PRECISION_NAMES, check_precision_name

PRECISIONS: dict[str, torch.dtype] = dict(
    zip(PRECISION_NAMES, (torch.bfloat16, torch.float16, torch.float32), strict=True)
)


def check_precision(precision: str) -> torch.dtype:
    """The torch dtype of `bf16|fp16|fp32`; anything else is a ValueError naming the flag
    (`pipeline.toolkit.launch.check_precision_name`, the one check)."""
    return PRECISIONS[check_precision_name(precision)]


def keep_float32(module: nn.Module) -> nn.Module:
    """Cast `module` to float32 and make its forward take float32 inputs outside autocast.

    Call it after any `model.to(dtype=...)`, which would cast the module back. The override is a
    bound method, so a deepcopy of the model carries it to the copy.
    """
    module.float()
    module.forward = types.MethodType(_float32_forward, module)
    return module


def _as_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    if isinstance(value, list | tuple):
        return type(value)(_as_float32(v) for v in value)
    return value


def _float32_forward(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    device = next((p.device.type for p in module.parameters()), "cpu")
    with torch.autocast(device, enabled=False):
        return type(module).forward(
            module, *_as_float32(args), **{k: _as_float32(v) for k, v in kwargs.items()}
        )
