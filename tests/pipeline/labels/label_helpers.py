"""Helpers for the label-store tests: depth-like maps, small label shards, damage."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pipeline.bench.codecs import middlebury_disparity, synthetic_scene
from pipeline.labels.store import backend_suffix, open_writer
from pipeline.toolkit.atomic import read_json

BACKEND_NAMES = ["wds", "zarr"]
PLAN = "a" * 64
OTHER_PLAN = "b" * 64
VIEW = 64  # small views keep the suite fast; the backends take shapes from the data


@functools.lru_cache(maxsize=1)
def middlebury() -> np.ndarray:
    return middlebury_disparity()


def key_maps(seed: int, view: int = VIEW, regions: int = 2) -> dict[str, np.ndarray]:
    """Maps of one key: a full map from the Middlebury disparity or a synthetic scene (different
    shapes per key), and per region one shared-context view plus 1-3 tiles (synthetic)."""
    if seed % 2 == 0:
        full = middlebury()[:: 4 + seed % 3, ::4]
    else:
        full = 1.0 / synthetic_scene(48 + 8 * seed, 72, seed)
    maps = {"full": np.ascontiguousarray(full, dtype=np.float32)}
    for k in range(regions):
        maps[f"r{k}.sc"] = synthetic_scene(view, view, seed * 10 + k)
        for j in range(1 + (seed + k) % 3):
            tile = middlebury()[40 * j : 40 * j + view, 60 * k : 60 * k + view]
            maps[f"r{k}.t{j}"] = np.ascontiguousarray(tile) * (1 + 0.1 * seed)
    return maps


def shard_path(tmp_path: Path, backend: str, index: int = 0) -> Path:
    return tmp_path / f"{index:06d}{backend_suffix(backend)}"


def writer_options(backend: str) -> dict:
    """One row per zarr shard file, so tests can damage one map's data alone."""
    return {"rows_per_shard": 1} if backend == "zarr" else {}


def write_shard(path: Path, backend: str, content: dict, codec: str = "pcodec-f16", **kw):
    """`content`: key -> maps dict, or key -> str (an error with no maps). Returns the summary."""
    kw = {**writer_options(backend), **kw}
    kw.setdefault("plan_sha256", PLAN)
    with open_writer(path, backend=backend, codec=codec, keys=list(content), **kw) as w:
        for key, maps in content.items():
            if isinstance(maps, str):
                w.write(key, error=maps)
            else:
                w.write(key, maps, record_extra={"kind": "disparity"})
    return w.summary


def damage_map(path: Path, backend: str, key: str, name: str) -> None:
    """Destroy the stored bytes of one map (wds: overwrite its payload; zarr: delete its file)."""
    if backend == "wds":
        index = read_json(path.with_name(path.name + ".idx.json"))
        (offset, size) = next(
            (o, s) for n, o, s in index["members"] if n.startswith(f"{key}.{name}.")
        )
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(b"\xff" * size)
        return
    attrs = read_json(path / "zarr.json")["attributes"]
    array, row = attrs["locations"][key][name]
    chunk = path / array / "c" / ("0/0" if row is None else f"{row}/0/0")
    if not chunk.is_file():
        raise FileNotFoundError(chunk)
    chunk.unlink()
