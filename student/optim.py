"""Optimizer and schedule of `student train`: AdamW over the student's parameter groups, linear
warm-up then polynomial decay, gradient clipping, and the GradScaler of fp16 runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from student.config import OptimSettings
from student.model import Student


def lr_factor(
    step: int,
    total: int,
    warmup: int,
    power: float,
    continued: Sequence[tuple[int, int]] = (),
) -> float:
    """Factor of step `step` (0-based): linear warm-up to 1 at step `warm - 1` (warm = warmup
    capped at a tenth of the run), then polynomial decay towards 0 at step `total`.

    `continued`: the run's continuations `(at_step, steps)` in order (`student train --resume
    --steps N`). From `at_step` on, the schedule is recomputed for the new total: the decay the
    run would have had with `steps` steps from the start, with the warm-up of the first total
    (already done, so no second warm-up)."""
    warm = max(1, min(warmup, total // 10))
    for at, steps in reversed(continued):
        if step >= at:
            total = steps
            break
    if step < warm:
        return (step + 1) / warm
    return max(0.0, 1 - (step + 1 - warm) / max(1, total + 1 - warm)) ** power


@dataclass
class Optimization:
    """What one optimizer step does: unscale, clip, step, update the scale, schedule."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    parameters: list[nn.Parameter]
    """The parameters whose gradient norm is clipped (all of the student's)."""
    grad_clip: float
    """Clipping threshold of the gradient norm; 0 disables clipping."""

    @classmethod
    def for_student(
        cls,
        student: Student,
        optim: OptimSettings,
        steps: int,
        fp16: bool,
        continued: Sequence[tuple[int, int]] = (),
    ) -> Optimization:
        """AdamW (encoder at `lr * encoder_lr_ratio`) scheduled over a run of `steps` steps
        (the run's first total) and its `continued` totals (`lr_factor`); `fp16`: scale the loss
        against underflow (a CUDA fp16 run)."""
        continued = tuple(continued)  # the schedule's own copy
        groups = student.param_groups(optim.lr, optim.encoder_lr_ratio)
        optimizer = torch.optim.AdamW(groups, weight_decay=optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, steps, optim.warmup_steps, optim.poly_power, continued),
        )
        scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        return cls(optimizer, scheduler, scaler, list(student.parameters()), optim.grad_clip)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradient of `loss` (scaled when the GradScaler is on)."""
        self.scaler.scale(loss).backward()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def learning_rates(self) -> dict[str, float]:
        """The learning rate of each parameter group (`encoder`, `decoder`) for the next step."""
        return {g["name"]: g["lr"] for g in self.optimizer.param_groups}

    def step(self) -> float | None:
        """Clip, step and schedule; the gradient norm, or None when the step was not taken.

        A non-finite gradient norm (possible with a finite loss) skips the update, as does an
        fp16 overflow, which the GradScaler answers by lowering its scale. Under DDP the gradients,
        hence the decision, are the same on every rank.
        """
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip or float("inf"))
        if not self.scaler.is_enabled() and not bool(torch.isfinite(norm)):
            self.zero_grad()
            return None
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.zero_grad()
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale:
            return None
        self.scheduler.step()
        return float(norm)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint entries `optimizer`, `scheduler` and `scaler`."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        # The next step's rates from this schedule (the checkpoint holds the ones its schedule
        # gave; they differ when the run was continued to another total).
        step, scheduler = self.scheduler.last_epoch, self.scheduler
        for group, base, factor in zip(
            self.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
        ):
            group["lr"] = base * factor(step)
        scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
