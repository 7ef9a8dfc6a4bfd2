"""`pipeline status`: which label shards exist, per column, whether they fit this dataset, how
many of their maps are flagged, and what they cost on disk.

A shard's state follows the rule every command applies (`LabelColumn.check_shard`): `done`
(usable), `failed`, `missing` (not labelled yet), `foreign` (labelled from other images than this
dataset's, or for another crop plan: e.g. a column copied from another dataset) or `damaged`
(listed as done, but its file is gone or has another size than recorded). Samples, bytes and map
counts are over the done shards only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.dataset import DatasetInfo, load_dataset
from pipeline.labels.column import (
    FAILED,
    MISSING,
    NOT_LABELLED,
    OTHER_IMAGES,
    RESIZED,
    USABLE,
    LabelColumn,
    ShardCheck,
)
from pipeline.labels.commands import relabel_command, shard_ranges
from pipeline.labels.quality import DEFAULT_MAX_UNUSABLE, check_max_unusable
from pipeline.world.origin import column_origin_problem

STATES = {
    USABLE: "done",
    FAILED: "failed",
    NOT_LABELLED: "missing",
    OTHER_IMAGES: "foreign",
    MISSING: "damaged",
    RESIZED: "damaged",
}
"""The state `pipeline status` shows for each `ShardCheck.status`."""


def _shard_states(column: LabelColumn, checks: list[ShardCheck]) -> dict[str, dict[str, Any]]:
    """`{shard: {**manifest entry, "status": state}}` (state from `STATES`; every recorded shard
    of a column made for another crop plan is foreign)."""
    other_plan = column.other_plan()
    shards = {}
    for check in checks:
        entry = column.manifest.shards.get(check.shard)
        state = STATES[check.status]
        if other_plan and entry is not None:
            state = "foreign"
        shards[check.shard] = {**(entry or {}), "status": state}
    return shards


def _notes(column: LabelColumn, shards: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong with the column's shards, and the command that fixes it."""
    info, name, notes = column.info, column.name, []
    if column.other_plan():
        notes.append(
            f"{name}: made for another crop plan ({column.manifest.plan_sha256[:12]}, this "
            f"dataset's is {info.plan_hash[:12]}): copied from another dataset, or the dataset "
            f"was prepared again; no shard of it fits. Relabel it: "
            f"{relabel_command(column)} --overwrite"
        )
    elif foreign := [s for s, e in shards.items() if e["status"] == "foreign"]:
        notes.append(
            f"{name}: foreign shards {shard_ranges(foreign)} (labelled from other images than "
            f"this dataset's); relabel them: {relabel_command(column, foreign)}"
        )
    if wrong := column_origin_problem(info.raw, info.layout.root, column.manifest, name):
        notes.append(wrong)
    if damaged := [s for s, e in shards.items() if e["status"] == "damaged"]:
        notes.append(
            f"{name}: damaged shards {shard_ranges(damaged)} (listed as done, but the file is "
            f"gone or has another size); relabel them: {relabel_command(column, damaged)}"
        )
    return notes


def column_status(
    info: DatasetInfo, column: str, max_unusable: float = DEFAULT_MAX_UNUSABLE
) -> dict[str, Any]:
    """Per-shard state of one column (see the module docstring), totals and flagged maps
    (`unusable_problem`: the rule of `pipeline.labels.quality` with `max_unusable`)."""
    col = LabelColumn(info, column)
    manifest, checks = col.manifest, col.check_shards()
    shards = _shard_states(col, checks)
    done = [e for e in shards.values() if e["status"] == "done"]
    counts = col.map_counts([] if col.other_plan() else checks)
    nbytes = sum(int(e.get("bytes", 0)) for e in done)
    pixels = sum(int(e.get("pixels", 0)) for e in done)
    states = list(shards.values())
    return {
        "teacher": manifest.teacher,
        "adapter": manifest.adapter,
        "codec": manifest.codec,
        "backend": manifest.backend,
        **{state: sum(e["status"] == state for e in states) for state in _STATE_NAMES},
        "samples": sum(int(e.get("count", 0)) for e in done),
        "failures": sum(len(e.get("failures", [])) for e in done),
        "bytes": nbytes,
        "bytes_per_pixel": nbytes / pixels if pixels else None,
        "maps": {
            "maps": counts.maps,
            "unusable": counts.unusable,
            "map_flags": dict(sorted(counts.map_flags.items())),
            "images": counts.images,
            "image_flags": dict(sorted(counts.image_flags.items())),
            "uncounted_shards": counts.unknown,
            "flagged": counts.describe(),
        },
        "unusable_problem": col.unusable_problem(max_unusable, counts=counts),
        "notes": _notes(col, shards),
        "shards": shards,
    }


_STATE_NAMES = ("done", "failed", "missing", "foreign", "damaged")
WORLD_ADAPTER = "world"
"""The adapter of a column `pipeline world labels` wrote (`pipeline.world.labels.ADAPTER`)."""
SKY = " (sky: the world's invalid depth)"
"""What an `inf` map flag of a world column is: the sky, where depth is infinite by design."""


def _flagged(col: dict[str, Any]) -> str:
    """The flagged maps of `col`, an `inf` flag of a world column named as the sky."""
    parts = col["maps"]["flagged"].split(", ")
    world = col.get("adapter") == WORLD_ADAPTER
    return ", ".join(p + SKY if world and p.startswith("inf ") else p for p in parts)


def dataset_status(root: Path | str, max_unusable: float = DEFAULT_MAX_UNUSABLE) -> dict[str, Any]:
    """Everything `pipeline status --json` prints."""
    check_max_unusable(max_unusable)
    info = load_dataset(Path(root).resolve())  # the commands it prints work from anywhere
    return {
        "dataset": str(info.layout.root),
        "shards": len(info.shards),
        "samples": info.num_samples,
        "rejected": len(info.rejected),
        "plan_hash": info.plan_hash,
        "columns": {c: column_status(info, c, max_unusable) for c in info.layout.columns()},
    }


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


_ROW = "{:<20} {:>5} {:>6} {:>7} {:>7} {:>8} {:>10} {:>10} {:>9}"
_HEADER = ("column", "done", "failed", "missing", "foreign", "samples", "bytes", "B/label px")


def _row(name: str, col: dict[str, Any]) -> str:
    bpp = f"{col['bytes_per_pixel']:.3f}" if col["bytes_per_pixel"] is not None else "-"
    maps = col["maps"]
    unusable = f"{maps['unusable']}/{maps['maps']}" if maps["maps"] else "-"
    values = (col["done"], col["failed"], col["missing"], col["foreign"], col["samples"])
    return _ROW.format(name, *values, _human_bytes(col["bytes"]), bpp, unusable)


def _column_lines(name: str, col: dict[str, Any]) -> list[str]:
    lines = list(col["notes"])
    for state in ("failed", "missing"):
        todo = [s for s, e in col["shards"].items() if e["status"] == state]
        if todo:
            lines.append(f"{name}: {state} shards {shard_ranges(todo)}")
    if col["failures"]:
        lines.append(f"{name}: {col['failures']} images failed in finished shards (see manifest)")
    if col["unusable_problem"]:  # names the flagged maps too
        lines.append(f"{name}: UNUSABLE: {col['unusable_problem']}")
    elif col["maps"]["flagged"] != "none":
        lines.append(f"{name}: flagged maps: {_flagged(col)}")
    return lines


def format_status(status: dict[str, Any]) -> str:
    """A human table: one row per column (`unusable`: maps that teach nothing, of the maps of
    its done shards), then what is not done or not right, per column."""
    lines = [
        f"dataset {status['dataset']}: {status['samples']} images in {status['shards']} shards, "
        f"{status['rejected']} rejected inputs"
        + (" (see dataset.json 'rejected')" if status["rejected"] else ""),
    ]
    if not status["columns"]:
        lines.append("no label columns yet: run `labelgen run --dataset DATASET --teacher ...`")
        return "\n".join(lines)
    header = _ROW.format(*_HEADER, "unusable")
    lines += ["", header, "-" * len(header)]
    lines += [_row(name, col) for name, col in status["columns"].items()]
    for name, col in status["columns"].items():
        lines += _column_lines(name, col)
    return "\n".join(lines)
