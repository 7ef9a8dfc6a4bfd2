"""Checks on the label columns a training run reads, made once before training starts.

`check_columns(dataset, teachers)` refuses, with a `ValueError` that names the column, the file and
the fix:

- a column without `labels/<teacher>/manifest.json`;
- a column made for another crop plan (manifest `plan_sha256` ≠ the dataset's plan hash);
- a column whose codec this installation cannot decode (not in the codec registry, or with
  parameters it does not take);
- a column with a shard that is not `done` (or whose shard file is gone);
- a column with a shard whose size on disk is not the one its manifest recorded (truncated or
  replaced; summed over a Zarr shard's files, so a deleted chunk counts);
- a column with shards labelled from other images than the dataset's image shards hold now
  (the image shard was replaced after labelling; each manifest entry records its sha256);
- a column whose maps are mostly unusable (more than `max_unusable` of them hold no finite value
  or one value everywhere: `pipeline.labels.quality`, the rule `pipeline verify` applies too): its
  teacher's output is broken, and training on it would learn nothing;
- an affine-invariant *depth* teacher (`output_kind: depth`, `invariance: affine`).

Output kinds. The losses work in disparity space. `disparity` columns are used as stored. Metric
depth (`metric_depth`, or `depth` with `invariance: metric`) is converted to disparity `1 / d` when
a label is read (depth ≤ 0 or NaN becomes NaN, i.e. invalid; +inf becomes 0): a metric depth map
has no unknown shift, so its inverse is a disparity map up to scale, which every normalization
except `none` removes. Affine-invariant depth `a·d + b` has an unknown shift `b`, and
`1 / (a·d + b)` is not an affine function of disparity, so such teachers are refused for now.
A metric student (`student.output=metric`) reads metric columns in metres instead (`depth`: +inf
kept far as `FAR_DEPTH`), and disparity columns as disparity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.dataset.info import DatasetInfo, as_dataset
from pipeline.labels.codecs import codec_from_description
from pipeline.labels.column import (
    FAILED,
    MISSING,
    NOT_LABELLED,
    OTHER_IMAGES,
    RESIZED,
    LabelColumn,
    ShardCheck,
)
from pipeline.labels.commands import label_command, relabel_command
from pipeline.labels.manifest import ColumnManifest
from pipeline.labels.quality import DEFAULT_MAX_UNUSABLE

IDENTITY = "identity"
INVERSE = "inverse"
DEPTH = "depth"
FAR_DEPTH = 1e6
"""Metres a metric label's +inf (sky, nothing hit) is read as: far beyond any student's range."""


def label_conversion(manifest: ColumnManifest, metric: bool = False) -> str:
    """How a column's stored values become the labels the student reads: `identity`, `inverse`
    (1 / depth: disparity), or for a metric student (`metric`) a metric column's `depth` (metres
    kept, +inf kept far as `FAR_DEPTH`).

    Raises `ValueError` for affine-invariant depth (see the module docstring).
    """
    kind, invariance = manifest.output_kind, manifest.invariance
    if kind == "disparity":
        return IDENTITY
    if kind == "metric_depth" or invariance == "metric":
        return DEPTH if metric else INVERSE
    raise ValueError(
        f"label column {manifest.column!r} holds affine-invariant depth (output_kind 'depth', "
        "invariance 'affine'); the student losses work in disparity space and 1/(a·d + b) is not "
        "a disparity up to scale and shift, so such teachers are not supported for training yet. "
        "Use a disparity or metric-depth teacher for this column"
    )


def to_disparity(values: np.ndarray, conversion: str) -> np.ndarray:
    """Stored label values → disparity (or metres with `depth`), float32; non-finite results
    (and depth ≤ 0) → NaN; with `depth`, +inf (the sky) → `FAR_DEPTH`, finite, so a resize
    keeps it far."""
    out = np.asarray(values, dtype=np.float32)
    if conversion == INVERSE:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(out > 0, 1.0 / out, np.nan).astype(np.float32)
    elif conversion == DEPTH:
        out = np.where(out > 0, np.minimum(out, FAR_DEPTH), np.nan).astype(np.float32)
    elif conversion != IDENTITY:
        raise ValueError(f"unknown label conversion {conversion!r}")
    if not np.isfinite(out).all():
        out = np.where(np.isfinite(out), out, np.float32(np.nan)).astype(np.float32)
    return out


def check_plan(column: LabelColumn) -> None:
    if column.other_plan():
        raise ValueError(
            f"label column {column.name!r} ({column.manifest_path}): labels were made for "
            f"another crop plan (column plan {column.manifest.plan_sha256[:16]}, dataset plan "
            f"{column.info.plan_hash[:16]}): relabel or use the matching dataset"
        )


def check_codec(column: LabelColumn) -> None:
    """Refuse a column whose codec is unknown here, before any shard is opened."""
    try:
        codec_from_description(column.manifest.codec, str(column.manifest_path))
    except ValueError as e:
        raise ValueError(f"label column {column.name!r}: {e}") from e


def check_shards(column: LabelColumn) -> None:
    """Refuse a column with a shard that is not usable (`LabelColumn.check_shard`, the rule
    `labelgen run` and `pipeline verify` apply too): not done or gone, then resized, then
    labelled from other images."""
    checks = column.check_shards()
    check_complete(column, checks)
    _refuse_shards(
        column,
        [c.shard for c in checks if c.status == RESIZED],
        "differ in size from the manifest (truncated or replaced since labelling)",
    )
    _refuse_shards(
        column,
        [c.shard for c in checks if c.status == OTHER_IMAGES],
        "were labelled from other images than the dataset now holds (its image shards were "
        "replaced since)",
    )


def check_maps(column: LabelColumn, max_unusable: float = DEFAULT_MAX_UNUSABLE) -> None:
    """Refuse a column whose maps are mostly unusable (`LabelColumn.unusable_problem`)."""
    problem = column.unusable_problem(max_unusable, "data.max_unusable")
    if problem:
        raise ValueError(problem)


def check_complete(column: LabelColumn, checks: list[ShardCheck]) -> None:
    """Refuse a column that has not finished every shard of the dataset (or lost a file)."""
    missing = [c.shard for c in checks if c.status in (NOT_LABELLED, FAILED, MISSING)]
    if missing:
        shown = ", ".join(missing[:10]) + (
            f", ... ({len(missing)} in all)" if len(missing) > 10 else ""
        )
        raise ValueError(
            f"label column {column.name!r} ({column.manifest_path}) is not done for "
            f"{len(missing)} of {len(column.info.shards)} shards: {shown}. Finish it with "
            f"`{label_command(column)}` (finished shards are skipped)"
        )


def _refuse_shards(column: LabelColumn, shards: list[str], why: str) -> None:
    """A ValueError naming the column's `shards` that cannot be used, why, and the command that
    relabels them (nothing when `shards` is empty)."""
    if shards:
        raise ValueError(
            f"label column {column.name!r} ({column.manifest_path}): shards "
            f"{', '.join(shards)} {why}; relabel them: {relabel_command(column, shards)}"
        )


def check_columns(
    dataset: DatasetInfo | Path | str,
    teachers: list[str],
    max_unusable: float = DEFAULT_MAX_UNUSABLE,
) -> dict[str, ColumnManifest]:
    """Validate the teacher columns a training run will read; `{teacher: manifest}` in order.

    Raises `ValueError` naming the column, its manifest and the fix (see the module docstring;
    `max_unusable`: `data.max_unusable`).
    """
    info = as_dataset(dataset)
    if not teachers:
        raise ValueError("no teacher columns given: pass at least one --teacher NAME")
    duplicates = sorted({t for t in teachers if teachers.count(t) > 1})
    if duplicates:
        raise ValueError(f"teacher columns {duplicates} are given more than once")
    manifests: dict[str, ColumnManifest] = {}
    for name in teachers:
        column = LabelColumn(info, name)
        check_plan(column)
        check_codec(column)
        check_shards(column)
        check_maps(column, max_unusable)
        label_conversion(column.manifest)
        manifests[name] = column.manifest
    return manifests


def failed_keys(manifests: dict[str, ColumnManifest]) -> dict[str, dict[str, list[str]]]:
    """`{shard name: {key: [teachers whose label of the key failed]}}` from the manifests."""
    out: dict[str, dict[str, list[str]]] = {}
    for column, manifest in manifests.items():
        for shard_name, entry in manifest.shards.items():
            for failure in entry.get("failures", []):
                out.setdefault(shard_name, {}).setdefault(failure["key"], []).append(column)
    return out


def usable_counts(info: DatasetInfo, manifests: Mapping[str, ColumnManifest]) -> list[int]:
    """Per shard, the keys no chosen column's manifest lists as failed."""
    failed = failed_keys(dict(manifests))
    return [s.count - len(failed.get(s.name, {})) for s in info.shards]


def skip_counts(failed: Mapping[str, Mapping[str, list[str]]]) -> dict[str, int]:
    """`{"total": keys skipped, teacher: keys it failed}` from `columns.failed_keys`."""
    counts: Counter[str] = Counter()
    for keys in failed.values():
        counts["total"] += len(keys)
        for teachers in keys.values():
            counts.update(teachers)
    return dict(counts)
