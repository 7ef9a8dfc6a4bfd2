"""Label columns that know depth, without a teacher: the world's exact depth of every planned view,
and degraded variants of it that model what real teachers get wrong.

`write_world_column(dataset, world, column, degradation)` renders, for a dataset prepared from a
world split (`pipeline prepare --images WORLD_DIR`), every view the crop plan holds: `full` (the
whole image with its short side at `full_side`), `r{k}.sc` (region k at tile x tile, the view the
student sees) and `r{k}.t{j}` (the tiles at tile x tile: native resolution). Each label is the
exact z-depth of the ray through the label pixel's centre, rendered again from the image's
scene (`NNNNNN.json` beside the PNG): no resampling of a stored map.

`--world` must be the split the dataset was prepared from (`pipeline.world.origin`): another
split, even with the same file names, is refused before anything is written.

The column is an ordinary label column (manifest, codec, checksums, the dataset's plan): `student
train --teacher NAME` reads it like any other. What it holds:

- **exact** (no degradation): metric depth in metres (`metric_depth`); rays that hit nothing are
  +inf (infinitely far: disparity 0, which the student reads as valid, as real teachers predict
  the sky).
- **degraded**: disparity (`disparity`, affine-invariant), after, in this order,
  - `resolution R`: the teacher sees each view with its short side at R px, averaging the
    disparity of `supersample`² rays per pixel (a blur, as a network's input resize), and its
    label is resized back bilinearly. With R below the image's short side the full view loses
    the fine structure a native-resolution tile keeps (the paper's Fig. 5).
  - `distortion s`: a monotone curve on each view's disparity, `d' = m·(d/m)^γ` with `m` the
    view's largest disparity and `log γ ~ N(0, s²)` drawn per (image, view): the non-affine error
    of relative-depth models that a normalization over the whole image spreads (paper Sec. 3.1).
  - `bias b`: a smooth multiplicative field `exp(b·f(x, y))` per view (f: a few random
    low-frequency waves, unit amplitude): low-frequency error.
  - `noise n`: per-pixel multiplicative noise `exp(n·N(0, 1))`.
  Random draws are a pure function of (`seed`, key, view), so a column is reproducible.

Each key's label record carries every view's intrinsics (`intrinsics`: `{view name: {"fx", "fy",
"cx", "cy", "width", "height", "source": "world"}}`, `pipeline.dataset.camera.planned_intrinsics`
of the scene's own camera), as `labelgen run` writes them for images with a known camera.

Each degradation and its parameters are recorded in the manifest (`extra.options`, part of the
column's identity: a changed parameter is refused unless `overwrite`, like a teacher's options).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

import pipeline
from pipeline.dataset.camera import planned_intrinsics, world_intrinsics
from pipeline.dataset.info import DatasetInfo, ShardInfo, as_dataset
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.images.shards import ImageShardReader
from pipeline.labels.codecs import DEFAULT_CODEC, get_codec
from pipeline.labels.column import LabelColumn
from pipeline.labels.store import DEFAULT_BACKEND, open_writer
from pipeline.toolkit.atomic import read_json
from pipeline.world.degradation import Degradation, resize, rng_for, smooth_field
from pipeline.world.files import RECORD_SUFFIX, read_world
from pipeline.world.origin import check_image, check_record, check_world_origin, identity
from pipeline.world.render import render
from pipeline.world.scene import Scene

ADAPTER = "world"
Box = tuple[float, float, float, float]


def _area_disparity(scene: Scene, box: Box, h: int, w: int, k: int) -> np.ndarray:
    """Disparity of the view at h x w, each pixel the mean over k x k rays (sky: 0)."""
    view = render(scene, h * k, w * k, box, rgb=False)
    disp = np.where(view.valid, 1.0 / np.maximum(view.depth, 1e-6), 0.0)
    return disp.reshape(h, k, w, k).mean(axis=(1, 3))


def view_label(
    scene: Scene, box: Box, h: int, w: int, deg: Degradation, key: str, view: str
) -> np.ndarray:
    """The label of one view at h x w: exact z-depth (+inf where nothing is hit), or the
    degraded disparity (module docstring)."""
    if deg.exact:
        out = render(scene, h, w, box, rgb=False)
        return np.where(out.valid, out.depth, np.inf).astype(np.float32)
    if deg.resolution is None:
        disp = _area_disparity(scene, box, h, w, 1)
    else:
        scale = deg.resolution / min(h, w)
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        disp = resize(_area_disparity(scene, box, rh, rw, deg.supersample), h, w)
    rng = rng_for(deg.seed, key, view)
    peak = float(disp.max())
    if deg.distortion and peak > 0:
        disp = peak * (disp / peak) ** float(np.exp(rng.normal(0.0, deg.distortion)))
    if deg.bias:
        disp = disp * np.exp(deg.bias * smooth_field(rng, h, w))
    if deg.noise:
        disp = disp * np.exp(deg.noise * rng.normal(0.0, 1.0, (h, w)))
    return disp.astype(np.float32)


def full_shape(height: int, width: int, full_side: int) -> tuple[int, int]:
    """The `full` label's size: the image with its short side at `full_side` (never upscaled)."""
    scale = min(1.0, full_side / min(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def image_labels(
    scene: Scene, entry: dict[str, Any], tile: int, full_side: int, deg: Degradation, key: str
) -> dict[str, np.ndarray]:
    """Every planned view's label of one image: `full`, then the plan's region and tile views."""
    height, width = entry["size"]
    fh, fw = full_shape(height, width, full_side)
    maps = {"full": view_label(scene, (0, 0, width, height), fh, fw, deg, key, "full")}
    for name, box in views(entry):
        maps[name] = view_label(scene, tuple(box), tile, tile, deg, key, name)
    return maps


def image_cameras(scene: Scene, entry: dict[str, Any], tile: int, full_side: int) -> dict:
    """The record's `intrinsics` of every view `image_labels` renders, from the scene's camera."""
    height, width = entry["size"]
    source = world_intrinsics(scene.camera, height, width)
    views = planned_intrinsics(source, entry, tile, full_shape(height, width, full_side))
    return {"intrinsics": {name: cam.to_json() for name, cam in views.items()}}


def _scene_for(world: Path, key: str, size: list[int], split: dict[str, Any]) -> Scene:
    """The scene of image `key` (`WORLD/<key>.json`), its record checked against the split's
    identity `split` and the prepared image size."""
    path = world / f"{key}{RECORD_SUFFIX}"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no scene record for image {key!r}; --world must be the split folder the "
            "dataset was prepared from"
        )
    record = read_json(path)
    check_record(record, path, key, split)
    scene = Scene.from_json(record["scene"])
    if [scene.camera.height, scene.camera.width] != list(size):
        raise ValueError(
            f"{path}: the scene renders {scene.camera.height}x{scene.camera.width}, the dataset's "
            f"image {key!r} is {size[0]}x{size[1]}; prepare the dataset from this world again"
        )
    return scene


def provenance(
    info: DatasetInfo, world: Path, deg: Degradation, full_side: int, codec: str
) -> dict[str, Any]:
    """The column's manifest header."""
    record = read_world(world)
    generator = {k: record.get(k) for k in ("format", "generator", "seed", "split")}
    identity = json.dumps({"generator": generator, "degradation": deg.options()}, sort_keys=True)
    exact = deg.exact
    return {
        "teacher": "world-exact" if exact else "world-degraded",
        "adapter": ADAPTER,
        "weights": {"source": str(world), "sha256": hashlib.sha256(identity.encode()).hexdigest()},
        "output_kind": "metric_depth" if exact else "disparity",
        "invariance": "metric" if exact else "affine",
        "input_rule": {"full_short_side": full_side, "view_side": info.plan_params.tile},
        "precision": "fp32",
        "codec": get_codec(codec).describe(),
        "backend": DEFAULT_BACKEND,
        "plan_sha256": info.plan_hash,
        "code_version": pipeline.__version__,
        "extra": {"options": deg.options(), "world": generator},
    }


def _write_shard(
    column: LabelColumn, world: Path, shard: ShardInfo, deg: Degradation, full_side: int
) -> None:
    info = column.info
    plan = load_plan_shard(info.layout.plan_shard(shard.index))
    split = identity(read_world(world))
    with ImageShardReader(info.layout.image_shard(shard.index)) as images:
        keys = list(images.keys)
        if list(plan) != list(keys):
            raise ValueError(f"{info.layout.plan_shard(shard.index)}: keys differ from the images")
        scenes = {k: _scene_for(world, k, e["size"], split) for k, e in plan.items()}
        for key in keys:  # before any label is written: the same images, not the same names
            check_image(images.rgb(key), world, key, info.layout.root)
    codec = column.manifest.codec["name"]
    column.clear_stale_temporaries(shard)
    path = column.shard_path(shard.index)
    meta = {"column": column.name, "shard": shard.name}
    with open_writer(
        path, codec=codec, keys=keys, plan_sha256=shard.plan_sha256, extra_meta=meta
    ) as writer:
        for key, entry in plan.items():
            tile, scene = info.plan_params.tile, scenes[key]
            labels = image_labels(scene, entry, tile, full_side, deg, key)
            writer.write(key, labels, image_cameras(scene, entry, tile, full_side))
    done = writer.summary.manifest_entry()
    done["weights_sha256"] = column.manifest.weights["sha256"]
    done["image_sha256"] = shard.image_sha256
    column.record_done(shard, done)


def write_world_column(
    dataset: DatasetInfo | Path | str,
    world: Path | str,
    column: str,
    degradation: Degradation = Degradation(),
    full_side: int | None = None,
    codec: str = DEFAULT_CODEC,
    overwrite: bool = False,
    progress: bool = True,
) -> list[str]:
    """Write (or finish) label column `column` of a dataset prepared from the world split
    `world`; shards already usable are kept. Returns the names of the shards written.
    `full_side`: short side of the `full` labels (unset: the plan's tile side)."""
    from pipeline.toolkit.progress import progress_bar

    info = as_dataset(dataset)
    world = Path(world)
    side = info.plan_params.tile if full_side is None else full_side
    check_world_origin(info.raw, info.layout.root, world)  # before the column is touched
    col = LabelColumn(info, column)
    prov = provenance(info, world, degradation, side, codec)
    col.open({"column": column, **prov}, overwrite)  # refuses other parameters, or drops them
    todo = [c.shard for c in col.check_shards() if not c.usable]
    shards = [s for s in info.shards if s.name in todo]
    with progress_bar(len(shards), f"world labels {column}", "shard", enabled=progress) as bar:
        for shard in shards:
            _write_shard(col, world, shard, degradation, side)
            bar.update()
    return [s.name for s in shards]
