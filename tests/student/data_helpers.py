"""Small datasets with label columns for the `student.data` tests (no teacher involved)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from dataset_helpers import prepare_small
from PIL import Image

from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.labels.column import LabelColumn
from pipeline.labels.manifest import create_or_check, record_shard
from pipeline.labels.store import open_writer
from pipeline.toolkit.atomic import read_json, write_json

SIZES = [(700, 900), (480, 640), (1200, 800), (650, 650), (300, 420)]
"""Image sizes (H, W): tiled regions (4 tiles) and degenerate ones (1 tile)."""

MapFn = Callable[[str, dict[str, Any], str, list[int]], np.ndarray]
"""`fn(key, plan entry, map name, box) -> (h, w) float32`; box is None for `full`."""


def ramp_image(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 RGB whose red channel encodes x: R = 255·(x + 0.5)/W; green/blue vary with y/seed."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 255.0 * (x + 0.5) / width
    green = 255.0 * (y + 0.5) / height
    blue = np.full_like(x, 40.0 * (seed % 5))
    return np.clip(np.rint(np.stack([red, green, blue], -1)), 0, 255).astype(np.uint8)


def write_photos(folder: Path, sizes: Iterable[tuple[int, int]] = SIZES) -> Path:
    """Lossless PNG ramp photos `img{i}.png` (stored as PNG by `pipeline prepare`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(ramp_image(h, w, i)).save(folder / f"img{i}.png")
    return folder


def make_dataset(root: Path, shard_size: int = 2) -> Path:
    """A prepared dataset of the `SIZES` ramp photos under `root/ds` (3 shards: 2, 2, 1)."""
    return prepare_small(write_photos(root / "photos"), root / "ds", shard_size=shard_size)


def x_ramp(size: int = 56) -> MapFn:
    """Labels whose value is the original-image x coordinate of each label pixel's centre."""

    def fn(key: str, entry: dict[str, Any], name: str, box: list[int] | None) -> np.ndarray:
        height, width = entry["size"]
        x0, x1 = (0, width) if box is None else (box[0], box[2])
        h, w = (size, size) if box is not None else (size, max(2, size * width // height))
        xs = x0 + (np.arange(w, dtype=np.float32) + 0.5) * (x1 - x0) / w
        return np.tile(xs, (h, 1)).astype(np.float32)

    return fn


def constant(value: float, size: int = 56) -> MapFn:
    return lambda key, entry, name, box: np.full((size, size), value, np.float32)


def provenance(column: str, backend: str, plan: str, kind: str, invariance: str) -> dict:
    return {
        "teacher": column,
        "adapter": "fake",
        "weights": {"source": "none", "sha256": "0" * 64},
        "output_kind": kind,
        "invariance": invariance,
        "input_rule": {},
        "precision": "fp32",
        "codec": {"name": "pcodec-f16", "params": {"level": 8}},
        "backend": backend,
        "plan_sha256": plan,
    }


def write_column(
    dataset: Path,
    column: str,
    *,
    backend: str = "wds",
    maps: MapFn | None = None,
    errors: Collection[str] = (),
    kind: str = "disparity",
    invariance: str = "affine",
    shards: Collection[int] | None = None,
    reverse_keys: Collection[int] = (),
) -> None:
    """Write a label column; `errors` keys get an error record; shards in `reverse_keys` are
    written with their keys in reverse order (a valid shard out of lockstep)."""
    info = load_dataset(dataset)
    column_dir = info.layout.column_dir(column)
    create_or_check(column_dir, provenance(column, backend, info.plan_hash, kind, invariance))
    fn = maps or x_ramp()
    for shard in info.shards:
        if shards is not None and shard.index not in shards:
            continue
        plan = load_plan_shard(info.layout.plan_shard(shard.index))
        keys = list(plan)[:: -1 if shard.index in reverse_keys else 1]
        path = LabelColumn(info, column).shard_path(shard.index)
        with open_writer(path, backend=backend, keys=keys, plan_sha256=shard.plan_sha256) as w:
            for key in keys:
                if key in errors:
                    w.write(key, error="teacher output was all NaN")
                    continue
                entry = plan[key]
                labels = {"full": fn(key, entry, "full", None)}
                labels.update({name: fn(key, entry, name, box) for name, box in views(entry)})
                w.write(key, labels)
        record_shard(column_dir, shard.name, w.summary.manifest_entry())


def edit_manifest(dataset: Path, column: str, change: Callable[[dict], None]) -> None:
    """Apply `change` to the column manifest's JSON dict and save it."""
    path = load_dataset(dataset).layout.manifest(column)
    data = read_json(path)
    change(data)
    write_json(path, data)


def two_column_dataset(root: Path) -> Path:
    """`make_dataset(root)` with teacher columns `a` (wds backend) and `b` (zarr backend)."""
    ds = make_dataset(root)
    write_column(ds, "a", backend="wds")
    write_column(ds, "b", backend="zarr")
    return ds


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def all_keys(dataset: Path) -> list[str]:
    info = load_dataset(dataset)
    return [k for s in info.shards for k in load_plan_shard(info.layout.plan_shard(s.index))]
