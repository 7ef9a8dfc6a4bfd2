"""Learning diagnostics of `student train`: the scale of the student's prediction at each step,
and a watch that warns when that scale drifts away or collapses.

The losses are scale-and-shift invariant (`loss.norm_sc`, `loss.norm_lg`), so nothing in them
holds the prediction's magnitude in place: it can wander while the loss looks fine. Users of
Distill Any Depth report it (Westlake-AGI-Lab/Distill-Any-Depth#35 "the output value of Small
will become larger and larger as the training progresses"; #36, distilling DAv2-small from
DAD-Large: "outputs magnitude continues to increase as training goes"), and a re-implementation
of a Distill-Any-Depth-style pipeline saw the opposite (bartn8/depthanyevent#4: "the network
seems to converge to a degenerate solution, producing depth maps that are mostly uniform in color
and lacking any meaningful depth structure").
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

SCALE_FIELDS = ("pred_median", "pred_mad", "flat_fraction")
"""What `prediction_scale` measures: the fields it adds to a step's `metrics.jsonl` record."""

FLAT_SPREAD = 1e-3
FLAT_FLOOR = 1e-6
"""A sample's prediction is flat when its MAD < `FLAT_SPREAD` × max(|median|, `FLAT_FLOOR`)."""

CHECK = (
    "check the learning rate (optim.lr), the normalizations (loss.norm_sc, loss.norm_lg) and the "
    "teacher labels (pipeline verify)"
)


@torch.no_grad()
def prediction_scale(pred: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """The scale of a micro-batch's prediction, as 0-d tensors on its device (no sync):

    - `pred_median`, `pred_mad`: median of the predicted disparity over the batch's valid pixels
      (all samples pooled) and the median absolute deviation from it;
    - `flat_fraction`: the share of samples whose prediction is flat, i.e. its own MAD is below
      `FLAT_SPREAD` × max(|median|, `FLAT_FLOOR`). A real scene's disparity spreads by 10-100% of
      its median; one spread by less than 0.1% shows no structure at all (a map in 8 bits would
      be one grey level). The floor makes an all-zero map (a dead ReLU head) flat too, and so is
      one that is 0 on more than half of its pixels (its median and MAD are then 0).

    pred: `[B, 1, H, W]` (or `[B, H, W]`); valid: bool of the same shape. A sample without any
    valid pixel is measured on all of its finite pixels. Medians are torch's (the lower middle
    value for an even count).
    """
    p = pred.detach().float().flatten(1)
    finite = torch.isfinite(p)
    keep = valid.flatten(1) & finite
    keep = torch.where(keep.any(1, keepdim=True), keep, finite)
    x = torch.where(keep, p, torch.full_like(p, float("nan")))
    median = x.nanmedian(1, keepdim=True).values
    mad = (x - median).abs().nanmedian(1).values
    flat = mad < FLAT_SPREAD * median.squeeze(1).abs().clamp(min=FLAT_FLOOR)
    pooled = x.flatten().nanmedian()
    return {
        "pred_median": pooled,
        "pred_mad": (x - pooled).abs().flatten().nanmedian(),
        "flat_fraction": flat.float().mean(),
    }


class ScaleWatch:
    """Warns, once per kind and session, when the prediction's scale in the step records goes
    wrong (see the module docstring for the reports behind each kind):

    - `drift`: |median| or MAD exceeds `drift` × the reference scale, max(|median|, MAD) of the
      first record seen. Both are held to that one scale, so a student that starts nearly flat
      and learns structure (its MAD growing toward its median) is not drifting.
    - `growth`: the scale max(|median|, MAD) keeps growing: over the last `window` records it rose
      at 3 of every 4 records or more and ended `growth` times higher.
    - `collapse`: more than `flat` of the batch's samples are flat (`prediction_scale`), or the MAD
      fell below `collapse` × its first value.

    The reference is the first record this watch sees: a `--resume` builds a new watch, which
    takes the first step logged after the resume as its reference (a drift that happened before
    it goes unnoticed, but one that goes on does not).
    """

    def __init__(
        self,
        drift: float = 100.0,
        growth: float = 2.0,
        window: int = 20,
        collapse: float = 0.01,
        flat: float = 0.5,
    ) -> None:
        self.drift, self.growth, self.collapse, self.flat = drift, growth, collapse, flat
        self.recent: deque[float] = deque(maxlen=window + 1)
        self.first: dict[str, float] | None = None
        self.warned: set[str] = set()

    def check(self, record: dict[str, Any]) -> list[str]:
        """The warnings of one step record (`step_record`) whose kind was not raised before."""
        median, mad = abs(record["pred_median"]), record["pred_mad"]
        scale = max(median, mad)
        if self.first is None:
            self.first = {"step": record["step"], "median": record["pred_median"], "mad": mad}
            self.first["scale"] = scale
        self.recent.append(scale)
        found = {"drift": self._drift(median, mad), "growth": self._growth()}
        found["collapse"] = self._collapse(mad, record["flat_fraction"])
        warnings = []
        for kind, what in found.items():
            if what is not None and kind not in self.warned:
                self.warned.add(kind)
                warnings.append(self._message(kind, what, record))
        return warnings

    def _drift(self, median: float, mad: float) -> str | None:
        limit = self.drift * max(self.first["scale"], FLAT_FLOOR)
        if max(median, mad) <= limit:
            return None
        return f"|median| or MAD grew past {self.drift:g}x the first logged step's scale"

    def _growth(self) -> str | None:
        if len(self.recent) < self.recent.maxlen:
            return None
        values = list(self.recent)
        rises = sum(b > a for a, b in zip(values, values[1:], strict=False))
        if 4 * rises < 3 * (len(values) - 1) or values[-1] < self.growth * max(values[0], 1e-12):
            return None
        return (
            f"its scale keeps growing: it rose at {rises} of the last {len(values) - 1} logged "
            f"steps, {values[0]:.4g} -> {values[-1]:.4g}"
        )

    def _collapse(self, mad: float, flat_fraction: float) -> str | None:
        if flat_fraction > self.flat:
            return f"{flat_fraction:.0%} of the batch's samples are flat"
        if mad < self.collapse * self.first["mad"]:
            return f"its MAD fell below {self.collapse:g}x its first logged value"
        return None

    def _message(self, kind: str, what: str, record: dict[str, Any]) -> str:
        name = "collapsing" if kind == "collapse" else "scale drifting"
        first = self.first
        return (
            f"step {record['step']}: the student's prediction is {name}: {what} (median "
            f"{record['pred_median']:.4g}, MAD {record['pred_mad']:.4g}, flat fraction "
            f"{record['flat_fraction']:.2f}; at step {first['step']}: median {first['median']:.4g},"
            f" MAD {first['mad']:.4g}); {CHECK}"
        )
