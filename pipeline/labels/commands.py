"""The `labelgen run` commands that create, finish or relabel a label column, as messages print
them (`pipeline status`, `pipeline verify`, `student train`, the column's own refusals), and the
syntax of their `--redo` shard lists (`shard_ranges`, `parse_shard_ranges`).

The commands are built from what the column's manifest records (teacher, backend, codec,
precision, batch size), so that a relabelled shard is made as its neighbours were.
"""

from __future__ import annotations

import shlex
from typing import Protocol

from pipeline.dataset.info import DatasetInfo
from pipeline.dataset.layout import shard_name
from pipeline.labels.codecs import DEFAULT_CODEC
from pipeline.labels.manifest import ColumnManifest
from pipeline.labels.store import DEFAULT_BACKEND

LABEL_COMMAND = "labelgen run --dataset {root} --teacher {column}=ADAPTER:SOURCE"
DEFAULT_PRECISION = "bf16"  # `labelgen run --precision`'s default: relabel commands omit it


class Column(Protocol):
    """What the commands read of a column (`pipeline.labels.column.LabelColumn`)."""

    name: str
    info: DatasetInfo

    @property
    def manifest(self) -> ColumnManifest: ...


def label_command(column: Column) -> str:
    """The generic `labelgen run` command that creates or finishes the column."""
    return LABEL_COMMAND.format(root=column.info.layout.root.resolve(), column=column.name)


def relabel_command(column: Column, shards: list[str] | None = None) -> str:
    """The `labelgen run` command that (re)labels `shards` of the column (all missing ones when
    None), with the teacher, backend, codec, precision and batch size its manifest records."""
    m = column.manifest
    source = m.weights.get("source")
    if m.adapter and source:
        options = m.extra.get("options") or {}
        teacher = f"{column.name}={m.adapter}:{source}"
        teacher += "".join(f",{k}={v}" for k, v in options.items())
    else:
        teacher = f"{column.name}=ADAPTER:SOURCE"
    root = str(column.info.layout.root.resolve())  # works from any directory
    args = ["labelgen", "run", "--dataset", root, "--teacher", teacher]
    if m.backend != DEFAULT_BACKEND:
        args += ["--format", m.backend]
    codec = m.codec.get("name", DEFAULT_CODEC)
    if codec != DEFAULT_CODEC:
        args += ["--codec", codec]
    if m.precision != DEFAULT_PRECISION:
        args += ["--precision", m.precision]
    # The batch size the column's shards were labelled with (label bytes depend on it).
    sizes = {e.get("batch_size") for e in m.shards.values() if e.get("status") == "done"}
    sizes.discard(None)
    if len(sizes) == 1:
        args += ["--batch-size", str(sizes.pop())]
    if shards:
        args += ["--redo", shard_ranges(shards)]
    return shlex.join(args)


def shard_ranges(names: list[str]) -> str:
    """'000000-000003,000007' for a sorted list of shard names (the syntax of `--redo`)."""
    out: list[str] = []
    nums = [int(n) for n in names]
    start = prev = None
    for n in [*nums, None]:
        if start is not None and (n is None or n != prev + 1):
            out.append(f"{start:06d}" if start == prev else f"{start:06d}-{prev:06d}")
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return ",".join(out)


def parse_shard_ranges(
    values: list[str] | None, info: DatasetInfo, option: str = "--redo"
) -> set[str]:
    """`--redo` (or `--shards`: `option`, named in errors) values (`000003`, `3`, `000001-000004`,
    comma-separated, repeatable; what `shard_ranges` writes) -> names of shards of the dataset;
    an unknown shard is an error."""
    known = sorted(shard.name for shard in info.shards)
    out: set[str] = set()
    for part in (p.strip() for value in values or [] for p in value.split(",")):
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            lo, hi = int(first), int(last if sep else first)
        except ValueError:
            raise ValueError(
                f"{option} {part!r}: expected shard numbers such as 000003 or 000001-000004"
            ) from None
        if lo > hi or shard_name(lo) not in known or shard_name(hi) not in known:
            have = f"{known[0]} to {known[-1]}" if known else "none"
            raise ValueError(f"{option} {part!r}: no such shard in this dataset (it has {have})")
        out |= {name for name in known if lo <= int(name) <= hi}
    return out
