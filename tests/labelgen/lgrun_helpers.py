"""Helpers for the `labelgen run` tests: small datasets, tiny teacher specs, column snapshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dataset_helpers import LAUNCHER_VARIABLES
from PIL import Image

from labelgen.run import run
from labelgen.settings import RunSettings
from labelgen.teachers import parse_teacher_spec
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.toolkit.launch import Launch

TEACHER = "depth-anything-v2"
# Short side of the full view in the fast specs: keeps the full view cheap on CPU.
FAST_FULL = 140
# Photos of the shared dataset: (H, W). The first gets a region of 620 px with 2x2 tiles;
# the others are smaller than a tile (one resized tile per region).
BASE_SIZES = [(620, 760), (300, 420), (400, 380)]
# Solid colours whose views a fake teacher can recognise from the pixels alone.
COLOURS = {
    "red": (230, 20, 20),
    "green": (20, 230, 20),
    "blue": (20, 20, 230),
    "yellow": (230, 230, 20),
    "magenta": (230, 20, 230),
}


def _root_conftest() -> Any:
    """tests/conftest.py as a module (`import conftest` may name this directory's conftest)."""
    import importlib.util
    import sys

    name = "_lgrun_root_conftest"
    if name not in sys.modules:
        where = Path(__file__).resolve().parents[1] / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, where)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def scene_image(height: int, width: int, seed: int) -> np.ndarray:
    return _root_conftest().scene_image(height, width, seed)


def spec_str(name: str, ckpt: Path, full_size: int | None = FAST_FULL) -> str:
    opts = f",full_size={full_size}" if full_size else ""
    return f"{name}={TEACHER}:{ckpt}{opts}"


def write_photos(folder: Path, photos: dict[str, tuple[int, int] | tuple[int, int, str]]) -> Path:
    """`{stem: (H, W)}` scene photos (JPEG) or `{stem: (H, W, colour)}` solid colours (PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (stem, spec) in enumerate(photos.items()):
        if len(spec) == 3:
            h, w, colour = spec
            rgb = np.empty((h, w, 3), np.uint8)
            rgb[...] = COLOURS[colour]
            Image.fromarray(rgb).save(folder / f"{stem}.png")
        else:
            h, w = spec
            Image.fromarray(scene_image(h, w, i)).save(folder / f"{stem}.jpg", quality=90)
    return folder


def make_dataset(root: Path, photos: dict, shard_size: int = 1, regions: int = 1) -> Path:
    """Photos under `root/photos`, the prepared dataset at `root/ds`."""
    folder = write_photos(root / "photos", photos)
    out = root / "ds"
    settings = PrepareSettings(shard_size=shard_size, regions=regions)
    prepare([str(folder)], out, settings, progress=False, workers=1)
    return out


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def column_bytes(column_dir: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every published file of a column (hidden names excluded)."""
    out = {}
    for path in sorted(Path(column_dir).rglob("*")):
        rel = path.relative_to(column_dir)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = path.read_bytes()
    return out


def tree_snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Relative path -> (bytes, mtime_ns) of every file under `root`, hidden ones included."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def temporaries(root: Path) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob("*") if p.name.endswith(".tmp"))


def colour_of(view: torch.Tensor) -> str | None:
    """The `COLOURS` name of a solid-colour view (`[3,h,w]` float in [0,1]), else None."""
    mean = view.float().mean(dim=(1, 2)) * 255
    spread = view.float().std(dim=(1, 2)) * 255
    if float(spread.max()) > 8:
        return None
    for name, rgb in COLOURS.items():
        if float((mean - torch.tensor(rgb, dtype=mean.dtype)).abs().max()) < 12:
            return name
    return None


def wrap_predict(
    monkeypatch: Any, change: Callable[[Callable, torch.Tensor], torch.Tensor]
) -> list[int]:
    """Patch `labelgen.run.load_teacher` so that the loaded teacher's `predict(x)` becomes
    `change(original_predict, x)`. Returns a list that records every batch size."""
    import labelgen.run

    real = labelgen.run.load_teacher
    sizes: list[int] = []

    def load(spec, *args, **kwargs):
        teacher = real(spec, *args, **kwargs)
        original = teacher.predict

        def predict(x: torch.Tensor) -> torch.Tensor:
            sizes.append(len(x))
            return change(original, x)

        teacher.predict = predict
        return teacher

    monkeypatch.setattr(labelgen.run, "load_teacher", load)
    return sizes


def clean_env() -> dict[str, str]:
    """os.environ without the work-split variables, offline, for subprocesses."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def fail_shards(monkeypatch: Any, error: str, shard: str | None = None) -> Callable:
    """Patch `labelgen.run.label_shard` to raise `RuntimeError(error)` for shard `shard` (None:
    every shard). Returns the real `label_shard`, to put back."""
    import labelgen.run

    real = labelgen.run.label_shard

    def failing(job, *args, **kwargs):
        if shard is None or job.out.name.startswith(shard):
            raise RuntimeError(error)
        return real(job, *args, **kwargs)

    monkeypatch.setattr(labelgen.run, "label_shard", failing)
    return real


def label(dataset: Path, specs: list[str], env: dict | None = None, **settings):
    """`run` in-process with the test defaults (batch 4, no workers, no progress, rank 0/1);
    `settings` are `RunSettings` fields, or `launch=Launch(...)`."""
    launch = settings.pop("launch", Launch(workers=0, progress=False, precision="bf16"))
    return run(
        dataset,
        [parse_teacher_spec(s) for s in specs],
        RunSettings(**{"batch_size": 4, **settings}),
        env={} if env is None else env,
        launch=launch,
    )


def forget_shard(dataset: Path, column: str, shard: str) -> None:
    """Make a labelled column partly done: drop one shard's manifest entry and its files."""
    from pipeline.labels.manifest import ColumnManifest

    column_dir = dataset / "labels" / column
    manifest = ColumnManifest.load(column_dir / "manifest.json")
    del manifest.shards[shard]
    manifest.save(column_dir / "manifest.json")
    for path in column_dir.glob(f"{shard}.*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
