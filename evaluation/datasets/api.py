"""How users name a benchmark (`NAME=PATH[,option=value...]`), open it and check their data, and
the help that lists the registered benchmarks."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Any

import numpy as np

from evaluation.datasets.base import (
    DATASET_LOADERS,
    DATASETS,
    BenchmarkDataset,
    BenchmarkSample,
    DatasetError,
)
from pipeline.toolkit.cliutil import parse_options
from pipeline.toolkit.progress import progress_bar


def _split_arg(text: str) -> tuple[str, str | None, dict[str, str]]:
    """Syntax only: name (validated), path or None, options (names not yet validated)."""
    head, *rest = text.strip().split(",")
    name, _, path = head.partition("=")
    name = name.strip()
    DATASET_LOADERS.get(name)  # unknown names raise, listing the valid ones
    options = parse_options(rest, repr(text))
    return name, (path.strip() or None), options


def _usage(cls: type[BenchmarkDataset]) -> str:
    """`nyu=PATH[,split=...], PATH a directory or ... of <its layout>`; a built-in set's name and
    its layout help."""
    options = "".join(
        f"[,{key}={'|'.join(allowed) if allowed else '...'}]"
        for key, allowed in sorted(cls.options.items())
    )
    if not cls.needs_path:
        return f"{cls.name}{options} ({cls.expected_layout()})"
    return (
        f"{cls.name}=PATH{options}, PATH a directory or uncompressed .tar of "
        f"{cls.expected_layout()}"
    )


def dataset_option_help() -> str:
    """The help of `--dataset`: the syntax and the registered names."""
    loaders = [DATASET_LOADERS.get(name) for name in DATASET_LOADERS.names()]
    built_in = [cls.name for cls in loaders if not cls.needs_path]
    return (
        f"NAME[=PATH][,option=value...], NAME one of {', '.join(cls.name for cls in loaders)}; "
        "PATH a directory or an uncompressed .tar of its files"
        + (f" ({', '.join(built_in)}: built in, no PATH)" if built_in else "")
        + ". `evaluation --help` shows each one's layout and options."
    )


def benchmarks_help() -> str:
    """One paragraph per registered benchmark: its title and usage (what PATH must hold)."""
    lines = ["Benchmarks (--dataset):"]
    for name in DATASET_LOADERS.names():
        cls = DATASET_LOADERS.get(name)
        lines.append(f"{cls.title}: {_usage(cls)}.")
    return "\n\n".join(lines)


def parse_dataset_arg(text: str) -> tuple[str, str | None, dict[str, str]]:
    """`"nyu=/data/nyu.tar,split=/x/list.txt"` -> `("nyu", "/data/nyu.tar", {"split": ...})`;
    `"middlebury"` -> `("middlebury", None, {})`. Unknown names or options, a missing path
    (or a path for the built-in sample) raise `ValueError` saying what is valid. PATH must not
    contain commas."""
    name, path, options = _split_arg(text)
    cls = DATASET_LOADERS.get(name)
    cls.check_options(options)
    if cls.needs_path and path is None:
        raise ValueError(f"{text!r}: {name} needs a path: {_usage(cls)}")
    if not cls.needs_path and path is not None:
        raise ValueError(f"{text!r}: {name} is built in and takes no path")
    return name, path, options


def open_dataset(
    text_or_name: str, path: str | os.PathLike | None = None, **options: str
) -> BenchmarkDataset:
    """A loader from `"NAME=PATH[,option=value...]"`, or from a name plus `path` and options."""
    name, text_path, text_options = _split_arg(text_or_name)
    if path is not None and text_path is not None:
        raise ValueError(f"{text_or_name!r}: the path is given twice ({path})")
    cls = DATASET_LOADERS.get(name)
    merged = {**text_options, **{k: str(v) for k, v in options.items()}}
    cls.check_options(merged)
    chosen = str(path) if path is not None else text_path
    if cls.needs_path and chosen is None:
        raise DatasetError(f"{name} needs a path: {_usage(cls)}")
    return cls(chosen, **merged)


def check_sample(ds: BenchmarkDataset, key: str, sample: BenchmarkSample) -> None:
    """Types, shapes and value ranges every loader promises; a breach raises `DatasetError`."""
    where = f"{ds.root or ds.name}: sample {key!r}"
    rgb, depth, mask = sample.rgb, sample.depth, sample.valid_mask
    if sample.key != key:
        raise DatasetError(f"{where}: loaded as key {sample.key!r}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DatasetError(f"{where}: RGB {rgb.dtype} {rgb.shape}; expected uint8 [H, W, 3]")
    if depth.dtype != np.float32 or depth.shape != rgb.shape[:2]:
        raise DatasetError(
            f"{where}: depth {depth.dtype} {depth.shape}; expected float32 {rgb.shape[:2]}"
        )
    if np.isnan(depth).any() or (depth < 0).any():
        raise DatasetError(
            f"{where}: depth has NaN or negative values; expected metres >= 0, "
            "with 0 or +inf where invalid"
        )
    if mask is not None and (mask.dtype != np.bool_ or mask.shape != depth.shape):
        raise DatasetError(f"{where}: mask {mask.dtype} {mask.shape}; expected bool {depth.shape}")


def check_data(text: str, full: bool = False) -> dict[str, Any]:
    """Open `NAME=PATH[,options]`, which indexes the files and checks that every split entry
    exists, then decode the first sample (every sample with `full`, with a progress bar) and
    check it. Returns the counts; problems raise `DatasetError` naming the file."""
    from evaluation.protocol import scoring_mask  # the protocol reads the loaders' rules

    ds = open_dataset(text)
    desc = ds.describe()
    rules = dataclasses.replace(DATASETS.get(ds.name), eval_crop=None)
    keys = ds.keys() if full else ds.keys()[:1]
    shapes: Counter[str] = Counter()
    empty, lo, hi = 0, float("inf"), 0.0
    bar = progress_bar(len(keys), f"check {ds.name}", "sample", enabled=full)
    for key in bar.iterate(keys):
        sample = ds.load(key)
        check_sample(ds, key, sample)
        shapes["x".join(map(str, sample.depth.shape))] += 1
        valid = scoring_mask(sample.depth, rules, sample.valid_mask)
        if valid.any():
            lo = min(lo, float(sample.depth[valid].min()))
            hi = max(hi, float(sample.depth[valid].max()))
        else:
            empty += 1
    return {
        "name": ds.name,
        "root": ds.root,
        "split": desc["split"],
        "entries": desc["entries"],
        "with_gt": desc["count"],
        "skipped": len(desc["skipped"]),
        "expected": desc["expected_count"],
        "matches_expected": desc["count"] == desc["expected_count"],
        "checked": len(keys),
        "empty_gt": empty,
        "depth_range_m": [lo, hi] if hi > 0 else None,
        "shapes": dict(shapes),
    }
