"""Exponential moving average of the student's weights (`optim.ema`, off at 0).

With a decay d, after every optimizer step each floating-point tensor of the model's state dict
moves its average a fraction 1 - d' towards the new value, with d' = min(d, (1 + n) / (10 + n))
at the n-th update: the average follows the weights closely at the start instead of holding the
initial ones for thousands of steps. Integer buffers are copied. The averages are kept in fp32 on
the weights' device and saved in each checkpoint, so a resumed run continues the same average;
the export and the evaluation of a run use the averaged weights when the run kept them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def effective_decay(decay: float, updates: int) -> float:
    """The decay of the `updates`-th update (1-based): `decay`, lowered while few updates have
    been averaged."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage:
    """The running average of a model's state dict (see the module docstring)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"optim.ema must be in (0, 1) (0 turns it off), got {decay}")
        self.decay = decay
        self.updates = 0
        self.average = {
            name: value.detach().float().clone() if value.is_floating_point() else value.clone()
            for name, value in model.state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (after an optimizer step)."""
        self.updates += 1
        weight = 1 - effective_decay(self.decay, self.updates)
        for name, value in model.state_dict().items():
            average = self.average[name]
            if average.is_floating_point():
                average.lerp_(value.detach().float(), weight)
            else:
                average.copy_(value)

    def weights(self, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The averaged state dict in the dtypes of `like` (the model's own state dict)."""
        return {name: self.average[name].to(value.dtype) for name, value in like.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["average"]) != set(self.average):
            raise ValueError("the checkpoint's weight average is of another architecture")
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        for name, value in state["average"].items():
            self.average[name].copy_(value)


def averaged_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint's student is exported and evaluated with: the average when the
    run kept one (`optim.ema`), else the trained weights."""
    model = checkpoint["model"]
    ema = checkpoint.get("ema")
    if not ema:
        return model
    return {name: ema["average"][name].to(value.dtype) for name, value in model.items()}
