"""The training objective: `L = L_sc + λ_lg·L_lg + λ_feat·L_feat + λ_grad·L_grad` of a batch.

`Objective` is built once per run from the loss settings and the number of teachers: the `auto`
normalizations are resolved then (`LossSettings.resolved`), not on every micro-batch. Calling it
on the student's output and a batch of `DistillStream` gives the named terms and their weighted
total `loss` (what `metrics.jsonl` records, and what the trainer backpropagates).
"""

from __future__ import annotations

from typing import Any

import torch

from student.config import LossSettings
from student.losses import (
    FeatureAlignment,
    gradient_matching,
    local_global_gradient,
    local_global_loss,
    normalized_l1,
    total_loss,
    whole_regions,
)
from student.metric_terms import MetricLabels


class Objective:
    """The loss terms of `loss` (settings) for a run with `n_teachers` teachers.

    `feature_width`: the student's token width, for the feature-alignment term (None: no such
    term, e.g. a caller without tokens). Student and frozen encoder share that width, so the
    alignment has no projection: it holds no parameter to train or to place on a device.

    `metric`: a metric student's labels (`MetricLabels`; None: a relative student). Its samples
    from a metric teacher feed the log terms (`student.losses.metric`) on canonical depth; those
    from a relative teacher feed the scale-and-shift invariant terms, on the disparity `1 / p`
    of its prediction (`terms_fed` says which).
    """

    def __init__(
        self,
        loss: LossSettings,
        n_teachers: int,
        feature_width: int | None = None,
        metric: MetricLabels | None = None,
    ) -> None:
        self.metric = metric
        self.loss = loss.resolved(n_teachers)
        if metric is not None:
            metric.check(self.loss)
        self.weights = {"lg": loss.lambda_lg, "feat": loss.lambda_feat, "grad": loss.lambda_grad}
        self.align = (
            FeatureAlignment(feature_width, feature_width, margin=loss.feat_margin)
            if feature_width is not None and loss.lambda_feat > 0
            else None
        )

    def __call__(self, out: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, Any]:
        """The named loss terms of one batch and their weighted total `loss`."""
        pred = out["pred"].float()
        if self.metric is None:
            terms = self.relative_terms(pred, batch)
        else:
            terms = self.metric.terms(self.loss, self.relative_terms, pred, batch)
        if self.align is not None:
            terms["feat"] = self.align(out["tokens"].float(), out["frozen_tokens"].float())
        return total_loss(terms, self.weights)

    def relative_terms(self, pred: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The distillation terms (all but `feat`) on disparity labels."""
        s = self.loss
        target, valid = batch["sc"], batch["valid"]
        terms: dict[str, torch.Tensor] = {}
        if s.shared_context:
            terms["sc"] = normalized_l1(pred, target, valid, s.norm_sc)
        # Computed even for a batch without tiles (then 0, with a zero gradient): under DDP every
        # rank must give every parameter a gradient, whatever its batch holds.
        if s.local_global:
            tiles = tile_args(pred, batch)
            terms["lg"] = local_global_loss(pred, *tiles, norm=s.norm_lg)
        if s.lambda_grad > 0:  # on the labels the distillation terms use
            if s.shared_context:
                terms["grad"] = gradient_matching(pred, target, valid, norm=s.norm_grad)
            elif s.local_global:
                terms["grad"] = local_global_gradient(pred, *tiles, norm=s.norm_grad)
        return terms

    def label_pixels(self, batch: dict[str, Any]) -> torch.Tensor:
        """How many valid label pixels the distillation terms read in `batch` (`count_pixels`;
        a metric student's after canonicalisation: a view of unknown focal length has none)."""
        if self.metric is not None:
            batch = self.metric.canonical(batch)
        return self.count_pixels(batch)

    def count_pixels(self, batch: dict[str, Any]) -> torch.Tensor:
        """How many valid (finite, unmasked) label pixels the distillation terms read in `batch`:
        the shared-context labels and/or the real (not padding) tiles. 0 means the batch teaches
        nothing (its loss is 0 with no gradient): the trainer skips such a step as a bad one."""
        s = self.loss
        count = torch.zeros((), dtype=torch.int64, device=batch["sc"].device)
        if s.shared_context:
            count = count + (batch["valid"] & torch.isfinite(batch["sc"])).sum()
        if s.local_global:
            tiles = batch["tiles"]
            real = torch.arange(tiles.shape[1], device=tiles.device) < batch["tile_count"][:, None]
            count = count + (torch.isfinite(tiles) & real[:, :, None, None]).sum()
        return count


def tile_args(pred: torch.Tensor, batch: dict[str, Any]) -> tuple[Any, ...]:
    """What the local-global terms take besides the prediction: the batch's tiles, their boxes,
    the region (the whole S×S prediction) and the tile counts."""
    return batch["tiles"], batch["tile_boxes"], whole_regions(pred), batch["tile_count"]


def collapse_warning(loss: LossSettings, invariances: dict[str, str]) -> str | None:
    """The warning for `norm_lg: none` with relative (affine-invariant) teachers, else None.

    Without normalization the local-global term compares a tile's label with the student's
    prediction in the teacher's own scale and shift, which differ from tile to tile for a
    relative teacher: v2 Table 1 reports the term collapsing (ETH3D AbsRel 0.273). It stays
    allowed, as the ablation row it is."""
    relative = sorted(name for name, inv in invariances.items() if inv == "affine")
    if not (loss.local_global and loss.norm_lg == "none" and relative):
        return None
    return (
        f"loss.norm_lg=none with relative (affine-invariant) teachers {', '.join(relative)}: "
        "each tile's label has its own scale and shift, and the paper (v2 Table 1, row "
        "'local-global, no normalization') reports this setting collapsing (ETH3D AbsRel 0.273); "
        "kept as an ablation, use hybrid (the default) to train a model"
    )


def uncanonical_warning(
    loss: LossSettings, invariances: dict[str, str], metric_student: bool
) -> str | None:
    """The warning for a relative student that learns metric teachers' labels with a
    normalization of `none` (e.g. `auto` with one teacher), else None.

    Such a label is `1 / d` in metres: its scale is the scene's, yet a crop resized to the
    student's input is a longer lens, so the same pixels mean other metres from view to view.
    `none` is meaningful on canonical labels only, which a metric student learns."""
    metric = sorted(name for name, inv in invariances.items() if inv == "metric")
    unnormalized = [term for term, norm in loss.term_norms().items() if norm == "none"]
    if metric_student or not metric or not unnormalized:
        return None
    return (
        f"{', '.join('loss.norm_' + n for n in unnormalized)}=none with metric teachers "
        f"{', '.join(metric)}: their labels (1/metres) are compared without normalization, but "
        "a crop resized to the input is a longer lens, so their scale differs from view to "
        "view; none is meaningful on canonical labels only (student.output=metric learns them)"
    )
