"""Checks on the label columns a training run reads, made once before training starts.

`check_columns(dataset, teachers)` refuses, with a `ValueError` that names the column, the file and
the fix:

- a column without `labels/<teacher>/manifest.json`;
- a column made for another crop plan (manifest `plan_sha256` ≠ the dataset's plan hash);
- a column whose codec this installation cannot decode (not in the codec registry, or with
  parameters it does not take);
- a column with a shard that is not `done` (or whose shard file is gone);
- a column with shards labelled from other images than the dataset's image shards hold now
  (the image shard was replaced after labelling; each manifest entry records its sha256);
- an affine-invariant *depth* teacher (`output_kind: depth`, `invariance: affine`).

Output kinds. The losses work in disparity space. `disparity` columns are used as stored. Metric
depth (`metric_depth`, or `depth` with `invariance: metric`) is converted to disparity `1 / d` when
a label is read (depth ≤ 0 or NaN becomes NaN, i.e. invalid; +inf becomes 0): a metric depth map
has no unknown shift, so its inverse is a disparity map up to scale, which every normalization
except `none` removes. Affine-invariant depth `a·d + b` has an unknown shift `b`, and
`1 / (a·d + b)` is not an affine function of disparity, so such teachers are refused for now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.dataset import DatasetInfo, load_dataset
from pipeline.dataset.verify import relabel_command
from pipeline.labels.codecs import codec_from_description
from pipeline.labels.manifest import ColumnManifest, made_from_other_images
from pipeline.labels.store import BACKENDS, _load_builtin_backends

IDENTITY = "identity"
INVERSE = "inverse"
RELABEL = "labelgen run --dataset {root} --teacher {column}=ADAPTER:SOURCE"


def as_dataset(dataset: DatasetInfo | Path | str) -> DatasetInfo:
    """A `DatasetInfo` from itself or from a dataset directory."""
    return dataset if isinstance(dataset, DatasetInfo) else load_dataset(dataset)


def label_conversion(manifest: ColumnManifest) -> str:
    """How a column's stored values become disparity: `identity` or `inverse` (1 / depth).

    Raises `ValueError` for affine-invariant depth (see the module docstring).
    """
    kind, invariance = manifest.output_kind, manifest.invariance
    if kind == "disparity":
        return IDENTITY
    if kind == "metric_depth" or invariance == "metric":
        return INVERSE
    raise ValueError(
        f"label column {manifest.column!r} holds affine-invariant depth (output_kind 'depth', "
        "invariance 'affine'); the student losses work in disparity space and 1/(a·d + b) is not "
        "a disparity up to scale and shift, so such teachers are not supported for training yet. "
        "Use a disparity or metric-depth teacher for this column"
    )


def to_disparity(values: np.ndarray, conversion: str) -> np.ndarray:
    """Stored label values → disparity, float32; non-finite results (and depth ≤ 0) → NaN."""
    out = np.asarray(values, dtype=np.float32)
    if conversion == INVERSE:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(out > 0, 1.0 / out, np.nan).astype(np.float32)
    elif conversion != IDENTITY:
        raise ValueError(f"unknown label conversion {conversion!r}")
    if not np.isfinite(out).all():
        out = np.where(np.isfinite(out), out, np.float32(np.nan)).astype(np.float32)
    return out


def column_suffix(manifest: ColumnManifest, path: Path) -> str:
    """The shard file suffix of the column's backend ('.tar', '.zarr')."""
    _load_builtin_backends()
    if manifest.backend not in BACKENDS.names():
        raise ValueError(
            f"{path}: label backend {manifest.backend!r} is unknown; known: {BACKENDS.names()}"
        )
    return BACKENDS.get(manifest.backend).suffix


def load_column(info: DatasetInfo, column: str) -> ColumnManifest:
    """The manifest of one column, or a `ValueError` saying how to create it."""
    path = info.layout.manifest(column)
    if not path.is_file():
        have = info.layout.columns()
        fix = RELABEL.format(root=info.layout.root, column=column)
        raise ValueError(
            f"label column {column!r} not found: {path} does not exist (columns present: "
            f"{have or 'none'}). Create it with `{fix}` or pick an existing column"
        )
    return ColumnManifest.load(path)


def check_plan(info: DatasetInfo, column: str, manifest: ColumnManifest) -> None:
    if manifest.plan_sha256 != info.plan_hash:
        raise ValueError(
            f"label column {column!r} ({info.layout.manifest(column)}): labels were made for "
            f"another crop plan (column plan {manifest.plan_sha256[:16]}, dataset plan "
            f"{info.plan_hash[:16]}): relabel or use the matching dataset"
        )


def check_codec(info: DatasetInfo, column: str, manifest: ColumnManifest) -> None:
    """Refuse a column whose codec is unknown here, before any shard is opened."""
    try:
        codec_from_description(manifest.codec, str(info.layout.manifest(column)))
    except ValueError as e:
        raise ValueError(f"label column {column!r}: {e}") from e


def unfinished_shards(info: DatasetInfo, column: str, manifest: ColumnManifest) -> list[str]:
    """Names of the dataset's shards that the column has not finished (or whose file is gone)."""
    suffix = column_suffix(manifest, info.layout.manifest(column))
    missing = []
    for shard in info.shards:
        done = manifest.is_done(shard.name)
        if not done or not info.layout.label_shard(column, shard.index, suffix).exists():
            missing.append(shard.name)
    return missing


def _refuse_shards(
    info: DatasetInfo, column: str, manifest: ColumnManifest, shards: list[str], why: str
) -> None:
    """A ValueError naming the column's `shards` that cannot be used, why, and the command that
    relabels them (nothing when `shards` is empty)."""
    if shards:
        fix = relabel_command(info.layout.root, column, manifest.to_dict(), shards)
        raise ValueError(
            f"label column {column!r} ({info.layout.manifest(column)}): shards "
            f"{', '.join(shards)} {why}; relabel them: {fix}"
        )


def check_images(info: DatasetInfo, column: str, manifest: ColumnManifest) -> None:
    """Refuse labels made from other images than the image shards the dataset holds now."""
    stale = [
        shard.name
        for shard in info.shards
        if made_from_other_images(manifest.shards.get(shard.name, {}), shard.image_sha256)
    ]
    _refuse_shards(
        info,
        column,
        manifest,
        stale,
        "were labelled from other images than the dataset now holds (its image shards were "
        "replaced since)",
    )


def check_sizes(info: DatasetInfo, column: str, manifest: ColumnManifest) -> None:
    """Refuse a column whose single-file shards differ in size from what the manifest recorded
    (truncated, or replaced by another file): one `stat` per shard. Directory shards are not
    walked here; `pipeline verify` checks every shard's checksum."""
    suffix = column_suffix(manifest, info.layout.manifest(column))
    changed = []
    for shard in info.shards:
        path = info.layout.label_shard(column, shard.index, suffix)
        recorded = manifest.shards.get(shard.name, {}).get("bytes")
        if recorded is not None and path.is_file() and path.stat().st_size != recorded:
            changed.append(shard.name)
    _refuse_shards(
        info,
        column,
        manifest,
        changed,
        "differ in size from the manifest (truncated or replaced since labelling)",
    )


def check_complete(info: DatasetInfo, column: str, manifest: ColumnManifest) -> None:
    missing = unfinished_shards(info, column, manifest)
    if missing:
        shown = ", ".join(missing[:10]) + (
            f", ... ({len(missing)} in all)" if len(missing) > 10 else ""
        )
        raise ValueError(
            f"label column {column!r} ({info.layout.manifest(column)}) is not done for "
            f"{len(missing)} of {len(info.shards)} shards: {shown}. Finish it with "
            f"`{RELABEL.format(root=info.layout.root, column=column)}` (finished shards are "
            "skipped)"
        )


def check_columns(
    dataset: DatasetInfo | Path | str, teachers: list[str]
) -> dict[str, ColumnManifest]:
    """Validate the teacher columns a training run will read; `{teacher: manifest}` in order.

    Raises `ValueError` naming the column, its manifest and the fix (see the module docstring).
    """
    info = as_dataset(dataset)
    if not teachers:
        raise ValueError("no teacher columns given: pass at least one --teacher NAME")
    duplicates = sorted({t for t in teachers if teachers.count(t) > 1})
    if duplicates:
        raise ValueError(f"teacher columns {duplicates} are given more than once")
    manifests: dict[str, ColumnManifest] = {}
    for column in teachers:
        manifest = load_column(info, column)
        check_plan(info, column, manifest)
        check_codec(info, column, manifest)
        check_complete(info, column, manifest)
        check_sizes(info, column, manifest)
        check_images(info, column, manifest)
        label_conversion(manifest)
        manifests[column] = manifest
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
