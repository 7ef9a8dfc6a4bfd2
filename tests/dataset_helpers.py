"""Build small prepared datasets with label columns, without running any teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.labels.column import LabelColumn
from pipeline.labels.manifest import create_or_check, record_shard
from pipeline.labels.store import open_writer

LAUNCHER_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
)
"""Variables that make a process a rank of a launched job (torchrun, SLURM); the tests of work
splits run without them (fixture `no_launcher_env`)."""


def scene_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth synthetic RGB photo (gradients + a disc) of the given size, uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 37 + y / 53)], axis=-1)
    cy, cx, r = (
        rng.uniform(0.3, 0.7) * height,
        rng.uniform(0.3, 0.7) * width,
        min(height, width) / 4,
    )
    base[(y - cy) ** 2 + (x - cx) ** 2 < r**2] *= 0.4
    return (np.clip(base, 0, 1) * 255).astype(np.uint8)


def write_photos(folder: Path) -> Path:
    """Five JPEG photos whose sizes exercise the crop plan: tiled regions and degenerate ones."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [(700, 900), (480, 640), (1200, 800), (650, 650), (300, 420)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(scene_image(h, w, i)).save(folder / f"img{i}.jpg", quality=90)
    return folder


def prepare_small(photos: Path, out: Path, shard_size: int = 2) -> Path:
    prepare([str(photos)], out, PrepareSettings(shard_size=shard_size), progress=False, workers=1)
    return out


def fake_map(h: int, w: int, seed: int) -> np.ndarray:
    """A depth-like disparity map: a tilted plane plus a bump, strictly positive."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (
        1.0
        + x / w
        + 0.5 * y / h
        + np.exp(-((x - w / 2) ** 2 + (y - h / 2) ** 2) / (h * w / 8)) * seed
    )


def write_fake_column(dataset: Path, column: str, backend: str = "wds", shards=None) -> None:
    """Write label column `column` for the given shard indices (default: all) with fake maps."""
    info = load_dataset(dataset)
    column_dir = info.layout.column_dir(column)
    create_or_check(
        column_dir,
        {
            "teacher": column,
            "adapter": "fake",
            "weights": {"source": "none", "sha256": "0" * 64},
            "output_kind": "disparity",
            "invariance": "affine",
            "input_rule": {},
            "precision": "fp32",
            "codec": {"name": "pcodec-f16", "params": {"level": 8}},
            "backend": backend,
            "plan_sha256": info.plan_hash,
        },
    )
    for shard in info.shards:
        if shards is not None and shard.index not in shards:
            continue
        plan = load_plan_shard(info.layout.plan_shard(shard.index))
        path = LabelColumn(info, column).shard_path(shard.index)
        with open_writer(
            path, backend=backend, keys=list(plan), plan_sha256=shard.plan_sha256
        ) as writer:
            for i, (key, entry) in enumerate(plan.items()):
                maps = {"full": fake_map(140, 182, i)}
                maps.update({name: fake_map(56, 56, i + 1) for name, _ in views(entry)})
                writer.write(key, maps)
        entry = writer.summary.manifest_entry()
        entry["weights_sha256"] = "0" * 64
        record_shard(column_dir, shard.name, entry)


def read_plan(dataset: Path) -> dict[str, dict]:
    """The whole crop plan of a prepared dataset: image key -> its plan entry."""
    info = load_dataset(dataset)
    plan: dict[str, dict] = {}
    for shard in info.shards:
        plan.update(load_plan_shard(info.layout.plan_shard(shard.index)))
    return plan
