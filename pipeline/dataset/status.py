"""`pipeline status`: which label shards exist, per column, and what they cost on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.dataset import DatasetInfo, load_dataset
from pipeline.labels.column import LabelColumn, shard_ranges


def column_status(info: DatasetInfo, column: str) -> dict[str, Any]:
    """Per-shard state of one column: `done`, `failed` or `missing`, from its manifest."""
    manifest = LabelColumn(info, column).manifest
    recorded = manifest.shards
    shards = {}
    for shard in info.shards:
        entry = recorded.get(shard.name)
        state = entry.get("status", "failed") if entry else "missing"
        shards[shard.name] = {"status": state, **(entry or {})}
    done = [e for e in shards.values() if e["status"] == "done"]
    nbytes = sum(int(e.get("bytes", 0)) for e in done)
    pixels = sum(int(e.get("pixels", 0)) for e in done)
    return {
        "teacher": manifest.teacher,
        "codec": manifest.codec,
        "backend": manifest.backend,
        "done": len(done),
        "failed": sum(e["status"] == "failed" for e in shards.values()),
        "missing": sum(e["status"] == "missing" for e in shards.values()),
        "samples": sum(int(e.get("count", 0)) for e in done),
        "failures": sum(len(e.get("failures", [])) for e in done),
        "bytes": nbytes,
        "bytes_per_pixel": nbytes / pixels if pixels else None,
        "shards": shards,
    }


def dataset_status(root: Path | str) -> dict[str, Any]:
    """Everything `pipeline status --json` prints."""
    info = load_dataset(root)
    return {
        "dataset": str(info.layout.root),
        "shards": len(info.shards),
        "samples": info.num_samples,
        "rejected": len(info.rejected),
        "plan_hash": info.plan_hash,
        "columns": {c: column_status(info, c) for c in info.layout.columns()},
    }


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


_ROW = "{:<20} {:>6} {:>6} {:>7} {:>8} {:>10} {:>10}"


def format_status(status: dict[str, Any]) -> str:
    """A human table: one row per column, then the shards that are not done."""
    lines = [
        f"dataset {status['dataset']}: {status['samples']} images in {status['shards']} shards, "
        f"{status['rejected']} rejected inputs"
        + (" (see dataset.json 'rejected')" if status["rejected"] else ""),
    ]
    if not status["columns"]:
        lines.append("no label columns yet: run `labelgen run --dataset DATASET --teacher ...`")
        return "\n".join(lines)
    header = _ROW.format("column", "done", "failed", "missing", "samples", "bytes", "B/label px")
    lines += ["", header, "-" * len(header)]
    for name, col in status["columns"].items():
        bpp = f"{col['bytes_per_pixel']:.3f}" if col["bytes_per_pixel"] is not None else "-"
        lines.append(
            _ROW.format(
                name,
                col["done"],
                col["failed"],
                col["missing"],
                col["samples"],
                _human_bytes(col["bytes"]),
                bpp,
            )
        )
    for name, col in status["columns"].items():
        for state in ("failed", "missing"):
            todo = [s for s, e in col["shards"].items() if e["status"] == state]
            if todo:
                lines.append(f"{name}: {state} shards {shard_ranges(todo)}")
        if col["failures"]:
            lines.append(
                f"{name}: {col['failures']} images failed in finished shards (see manifest)"
            )
    return "\n".join(lines)
