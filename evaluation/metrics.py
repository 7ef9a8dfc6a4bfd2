"""What the protocol measures: every metric's key, display label and direction, in one table
that `summary.json` carries (`metrics`), so readers of results take the labels from there."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric of the protocol: its key in results, its display label, its direction."""

    key: str
    label: str
    lower_is_better: bool


METRIC_TABLE = {
    m.key: m
    for m in (
        Metric("abs_rel", "AbsRel↓", True),
        Metric("delta1", "δ1↑", False),
        Metric("delta2", "δ2↑", False),
        Metric("delta3", "δ3↑", False),
        Metric("rmse", "RMSE↓", True),
        Metric("boundary_f1", "BF1↑", False),
    )
}
"""Every metric `evaluation.protocol.score` computes: the one place their labels and directions
are spelled."""

METRICS = ("abs_rel", "delta1", "delta2", "delta3", "rmse")
DETAIL_METRICS = ("boundary_f1",)
"""Metrics scored only on datasets whose rules ask for them (`DatasetRules.sharp_boundaries`)."""
