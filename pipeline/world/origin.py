"""Which world split a dataset was prepared from, and checks that a `--world DIR` is that split.

`pipeline prepare --images WORLD_DIR` records the split's identity in dataset.json under
`world_origin` (`origin_record`): its folder and the world.json fields that decide its bytes
(format, generator, seed, split, height, width, samples; not the image count, which grows when
more images are rendered). `pipeline world labels --world DIR` refuses a split of another
identity (`check_world_origin`), and every image's labels are rendered only after its record
names the same split and index and its pixels equal the prepared image's (`check_image`), so
another split with the same file names, or a folder mixing two, never labels the wrong scenes
(also for a dataset prepared before `world_origin` was recorded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.images.decode import decode_rgb
from pipeline.world.files import RGB_SUFFIX, WORLD_JSON, read_world

ORIGIN_KEY = "world_origin"
IDENTITY = ("format", "generator", "seed", "split", "height", "width", "samples")


def identity(world: dict[str, Any]) -> dict[str, Any]:
    """The fields of a world.json (or image record settings) that decide the split's bytes."""
    return {k: world.get(k) for k in IDENTITY}


def describe(ident: dict[str, Any]) -> str:
    """E.g. "split train, seed 0, 1500x2250" (the size where known)."""
    size = f", {ident['height']}x{ident['width']}" if ident.get("height") else ""
    return f"split {ident.get('split')}, seed {ident.get('seed')}{size}"


def origin_record(inputs: list[str]) -> dict[str, Any] | None:
    """dataset.json's `world_origin` for these `pipeline prepare` inputs: the identity of the one
    world split folder among them, or None (not prepared from one world split)."""
    worlds = [Path(i) for i in inputs if (Path(i) / WORLD_JSON).is_file()]
    if len(worlds) != 1 or len(inputs) != 1:
        return None
    return {"path": str(worlds[0].resolve()), **identity(read_world(worlds[0]))}


def check_world_origin(dataset: dict[str, Any], root: Path, world: Path) -> dict[str, Any]:
    """The identity of split `world`; raises naming both splits when `dataset` (a dataset.json
    at `root`) records another one as its origin."""
    mine = identity(read_world(world))
    origin = dataset.get(ORIGIN_KEY)
    if origin is not None and identity(origin) != mine:
        raise ValueError(
            f"--world {world} is the world {describe(mine)}, but {root} was prepared from "
            f"{origin.get('path')} ({describe(origin)}); pass --world {origin.get('path')}"
        )
    return mine


def column_origin_problem(dataset: dict[str, Any], root: Path, manifest: Any, column: str):
    """For a world label column (`manifest`) of the dataset at `root`: a line saying it was
    labelled from another split than the dataset's recorded origin, else None."""
    origin = dataset.get(ORIGIN_KEY)
    labelled = (manifest.extra or {}).get("world")
    if manifest.adapter != "world" or origin is None or not isinstance(labelled, dict):
        return None
    fields = ("format", "generator", "seed", "split")
    if all(labelled.get(k) == origin.get(k) for k in fields):
        return None
    return (
        f"{root / 'labels' / column}: labelled from the world {describe(labelled)}, but the "
        f"dataset was prepared from {origin.get('path')} ({describe(origin)}); relabel it: "
        f"pipeline world labels --dataset {root} --world {origin.get('path')} --column {column} "
        "--overwrite"
    )


def check_record(record: dict[str, Any], path: Path, key: str, world: dict[str, Any]) -> None:
    """An image record must belong to the split of world.json, as image `key`."""
    settings = identity(record.get("settings") or {})
    if settings != world or record.get("index") != int(key):
        raise ValueError(
            f"{path}: the record of image {record.get('index')!r} of the world "
            f"{describe(settings)}, not image {key} of this folder's {describe(world)}; "
            "render the split again into an empty folder"
        )


def check_image(prepared: np.ndarray, world: Path, key: str, dataset: Path) -> None:
    """The prepared image `key` must have the pixels of `WORLD/<key>.png`."""
    path = world / f"{key}{RGB_SUFFIX}"
    rendered = decode_rgb(path.read_bytes())
    if rendered.shape != prepared.shape or not np.array_equal(rendered, prepared):
        raise ValueError(
            f"{path}: not the image {key} that {dataset} was prepared from (other pixels); "
            "--world must be the split folder the dataset was prepared from"
        )
