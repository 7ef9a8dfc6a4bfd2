"""What a metric student (`student.output=metric`) learns from each sample of a batch.

A metric student predicts canonical depth (`student.losses.metric`): with f_c the run's
`student.canonical_focal` and fx_m the focal length of the view in pixels of the model's input
(the S×S view's `focal` times the model's side over S), a metric label `d` (metres) becomes
`d · f_c / fx_m`. Tiles are the region's: their labels scale with the region's camera, as the
prediction they are compared with is the region's. With `canonical_focal` null the labels stay in
metres (the camera-blind control). A view whose focal length is unknown has no valid metric label.

Per sample, by its teacher:
- a **metric** teacher feeds the log terms on canonical depth: `sc` = the scale-aware log loss
  (`loss.metric_loss`, silog or log-L1) of the view plus `lambda_far` × the far term on far
  pixels (label +inf or beyond `student.max_depth`: the student learns to output its far depth
  there, rather than a sky mask the Depth Anything architecture has no output for); `lg` = the
  same log loss on each tile at native resolution; `grad` = gradient matching of log depth (no
  normalization: log differences are free of the global scale, so the term teaches detail);
- a **relative** teacher feeds the same terms scale-and-shift invariant, on the disparity
  `1 / p` of the prediction with the run's normalizations, which must not be `none` (a relative
  label has no scale to learn).
Each term is the mean of the two groups' values weighted by their share of the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pipeline.dataset import DatasetInfo
from student.config import LossSettings, StudentSettings
from student.losses import (
    far_loss,
    gradient_matching,
    local_global_gradient,
    local_global_log_loss,
    log_loss_per_image,
    whole_regions,
)
from student.losses.metric import MIN_DEPTH

RelativeTerms = Callable[[torch.Tensor, dict[str, Any]], dict[str, torch.Tensor]]

SAMPLE_FIELDS = ("sc", "valid", "tiles", "tile_boxes", "tile_count", "focal")
"""The batch fields the terms read, per sample."""
FAR_FRACTION = 0.95
"""The far term pulls a far pixel's prediction up to this fraction of `student.max_depth`."""


@dataclass
class MetricLabels:
    """A metric student's labels and terms for a run whose teachers are `metric_teachers`
    (per teacher index, True for a metric one); `model_scale`: the model's input side over the
    view side S."""

    settings: StudentSettings
    metric_teachers: Sequence[bool]
    model_scale: float = 1.0

    def check(self, loss: LossSettings) -> None:
        """Refuse a run whose teachers cannot teach a metric student with these losses."""
        if not any(self.metric_teachers):
            raise ValueError(
                "student.output=metric needs at least one metric teacher (a label column of "
                "output kind metric_depth, e.g. depth-pro, a Depth Anything V2 metric checkpoint "
                "or the world's exact labels); these teachers are all relative"
            )
        if not all(self.metric_teachers):
            norms = loss.term_norms()
            if "none" in norms.values():
                names = ", ".join(f"loss.norm_{k}" for k, v in norms.items() if v == "none")
                raise ValueError(
                    f"a relative teacher teaches a metric student only through scale-and-shift "
                    f"invariant terms, but {names} is none: set it to global or hybrid"
                )

    def terms_fed(self, teachers: Sequence[str], loss: LossSettings) -> str:
        """One line for the log: which terms each teacher feeds, and how."""
        names = list(loss.term_norms())
        camera = (
            f"canonical depth at f_c = {self.settings.canonical_focal:g} px"
            if self.settings.canonical_focal is not None
            else "raw metres (student.canonical_focal null: blind to the camera)"
        )
        parts = []
        for name, metric in zip(teachers, self.metric_teachers, strict=True):
            how = f"{loss.metric_loss} on log {camera}" if metric else "1/prediction, normalized"
            parts.append(f"{name} feeds {', '.join(names)} ({how})")
        return "metric student: " + "; ".join(parts)

    def sample_is_metric(self, batch: dict[str, Any]) -> torch.Tensor:
        """`[B]` bool: the sample's teacher is metric."""
        table = torch.tensor(list(self.metric_teachers), dtype=torch.bool)
        return table.to(batch["sc"].device)[batch["teacher_index"].to(batch["sc"].device)]

    def factor(self, batch: dict[str, Any]) -> torch.Tensor:
        """`[B]`: what turns each sample's metric label into the student's target (NaN where
        the focal length is unknown)."""
        focal = batch["focal"][:, 0].to(batch["sc"].device, torch.float32)
        if self.settings.canonical_focal is None:
            return torch.ones_like(focal)
        return self.settings.canonical_focal / (focal * self.model_scale)

    def canonical(self, batch: dict[str, Any]) -> dict[str, Any]:
        """`batch` with its metric samples' labels (`sc`, `tiles`) as the student's targets."""
        scale = torch.where(self.sample_is_metric(batch), self.factor(batch), 1.0)
        sc = batch["sc"] * scale[:, None, None, None]
        tiles = batch["tiles"] * scale[:, None, None, None]
        return {**batch, "sc": sc, "valid": batch["valid"] & torch.isfinite(sc), "tiles": tiles}

    def terms(
        self, loss: LossSettings, relative: RelativeTerms, pred: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The distillation terms (all but `feat`) of a metric student's batch (`loss`: the
        run's resolved settings); `relative(pred, batch)` gives the terms of relative labels."""
        batch = self.canonical(batch)
        metric = self.sample_is_metric(batch)
        share = metric.float().mean()
        groups = []
        if bool(metric.any()):
            own = self.log_terms(loss, pred[metric], _subset(batch, metric))
            groups.append((share, own))
        if not bool(metric.all()):
            disparity = 1.0 / pred[~metric].clamp(min=MIN_DEPTH)
            rel = relative(disparity, _subset(batch, ~metric))
            groups.append((1 - share, rel))
        names = {name for _, terms in groups for name in terms}
        return {name: sum(w * t[name] for w, t in groups if name in t) for name in sorted(names)}

    def log_terms(
        self, loss: LossSettings, pred: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The log terms of samples from metric teachers (targets already canonical)."""
        top = self.settings.max_depth
        sc = batch["sc"]
        far = batch["valid"] & (sc >= top)
        valid = batch["valid"] & ~far
        target = torch.where(valid, sc, 1.0)
        tiles = batch["tiles"]
        tiles = torch.where(tiles >= top, float("nan"), tiles)
        tile_args = (tiles, batch["tile_boxes"], whole_regions(pred), batch["tile_count"])
        kind, lam = loss.metric_loss, loss.silog_lambda
        terms: dict[str, torch.Tensor] = {}
        if loss.shared_context:
            per, has = log_loss_per_image(pred, target, valid, kind, lam)
            sc_term = per.sum() / has.sum().clamp(min=1)
            terms["sc"] = sc_term + loss.lambda_far * far_loss(pred, far, FAR_FRACTION * top)
        if loss.local_global:
            terms["lg"] = local_global_log_loss(pred, *tile_args, kind=kind, lam=lam)
        if loss.lambda_grad > 0:
            log_pred = torch.log(pred.clamp(min=MIN_DEPTH))
            if loss.shared_context:
                terms["grad"] = gradient_matching(log_pred, torch.log(target), valid, norm="none")
            elif loss.local_global:
                log_tiles = torch.log(tiles.clamp(min=MIN_DEPTH))
                terms["grad"] = local_global_gradient(
                    log_pred, log_tiles, *tile_args[1:], norm="none"
                )
        return terms


def check_cameras(info: DatasetInfo) -> None:
    """Refuse to learn canonical depth on a dataset with images of unknown camera (their metric
    labels could not be canonicalised, and would teach nothing)."""
    known = sum(len(info.shard_intrinsics(shard.index)) for shard in info.shards)
    total = sum(shard.count for shard in info.shards)
    if known < total:
        raise ValueError(
            f"{info.layout.root}: {total - known} of {total} images have no camera, so their "
            "metric labels cannot be made canonical; prepare the dataset with `pipeline prepare "
            "--intrinsics FILE` (or from photos with EXIF focal lengths), or set "
            "student.canonical_focal=null to learn raw metres, blind to the camera"
        )


def _subset(batch: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The per-sample fields the terms read, for the samples `keep` selects."""
    return {name: batch[name][keep.to(batch[name].device)] for name in SAMPLE_FIELDS}
