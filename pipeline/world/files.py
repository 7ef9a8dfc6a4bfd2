"""A rendered world split on disk: one folder, four files per image, and `world.json`.

    DIR/world.json          the split: format, generator, seed, split, size, samples, images
    DIR/000000.png          RGB, 8-bit (deterministic bytes: no metadata, fixed compression)
    DIR/000000.depth.npy    float32 [H, W] z-depth in metres, 0 where invalid
    DIR/000000.mask.npy     bool [H, W]: True where the depth is valid (not sky, not beyond far)
    DIR/000000.json         the image's record: its index, the split settings and the scene

Only the PNGs are images to `pipeline prepare --images DIR` (it lists .png/.jpg/...; `.npy` and
`.json` are not image names), so a train split is a folder `prepare` takes as it is, with keys
`000000`, `000001`, ... The scene in each record redraws any view of the image exactly
(`load_scene` + `pipeline.world.render.render`); `rendered_camera` gives `pipeline prepare` the
camera of each image (its intrinsics, `pipeline.dataset.camera`).

Every file is published atomically and the record is written last, so a record whose settings
match marks a complete image: `render_world` skips those and renders the rest (resume).
"""

from __future__ import annotations

import io
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.images.decode import encode_png
from pipeline.toolkit.atomic import read_json, write_bytes, write_json
from pipeline.toolkit.cpus import auto_workers
from pipeline.toolkit.progress import progress_bar
from pipeline.toolkit.workers import exit_with_parent
from pipeline.world.camera import Camera
from pipeline.world.generate import DEFAULT_HEIGHT, DEFAULT_WIDTH, GENERATOR, SPLITS, make_scene
from pipeline.world.render import render
from pipeline.world.scene import Scene

FORMAT = "pipeline.world.split/1"
WORLD_JSON = "world.json"
RGB_SUFFIX, DEPTH_SUFFIX, MASK_SUFFIX, RECORD_SUFFIX = ".png", ".depth.npy", ".mask.npy", ".json"
PNG_COMPRESS_LEVEL = 1
"""zlib level, fixed as the bytes depend on it: 3x faster than level 6, files 20% bigger."""


@dataclass(frozen=True)
class WorldSettings:
    """What determines a split's bytes (recorded in world.json and in every image record)."""

    seed: int = 0
    """Scene seed (`--seed`); scenes are a pure function of (seed, split, index)."""
    split: str = "train"
    """train or test (`--split`): the two never share a scene."""
    height: int = DEFAULT_HEIGHT
    width: int = DEFAULT_WIDTH
    samples: int = 1
    """Rays per pixel side for the colour (`--samples`; k gives k x k); depth uses the centre."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"--seed must be an integer, got {self.seed!r}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"--height and --width must be ≥ 8, got {self.height}x{self.width}")
        if not 1 <= self.samples <= 8:
            raise ValueError(f"--samples must be in 1..8, got {self.samples}")

    def record(self) -> dict[str, Any]:
        return {"format": FORMAT, "generator": GENERATOR, **asdict(self)}


def image_stem(index: int) -> str:
    return f"{index:06d}"


def image_paths(folder: Path, stem: str) -> dict[str, Path]:
    """The four files of one image: rgb, depth, mask and record."""
    folder = Path(folder)
    suffixes = {"rgb": RGB_SUFFIX, "depth": DEPTH_SUFFIX, "mask": MASK_SUFFIX}
    paths = {name: folder / f"{stem}{suffix}" for name, suffix in suffixes.items()}
    paths["record"] = folder / f"{stem}{RECORD_SUFFIX}"
    return paths


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def scene_of(settings: WorldSettings, index: int) -> Scene:
    return make_scene(settings.seed, settings.split, index, settings.height, settings.width)


def render_image(folder: Path, settings: WorldSettings, index: int) -> int:
    """Render image `index` and publish its four files (the record last); returns `index`."""
    scene = scene_of(settings, index)
    view = render(scene, settings.height, settings.width, samples=settings.samples)
    paths = image_paths(folder, image_stem(index))
    write_bytes(paths["depth"], encode_npy(view.depth))
    write_bytes(paths["mask"], encode_npy(view.valid))
    write_bytes(paths["rgb"], encode_png(view.rgb, PNG_COMPRESS_LEVEL))
    record = {"index": index, "settings": settings.record(), "scene": scene.to_json()}
    write_json(paths["record"], record)
    return index


def is_complete(folder: Path, settings: WorldSettings, index: int) -> bool:
    """Whether image `index` is on disk with a record of the same settings."""
    paths = image_paths(folder, image_stem(index))
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        record = read_json(paths["record"])
    except ValueError:
        return False
    return record.get("settings") == settings.record() and record.get("index") == index


def load_scene(record_path: Path) -> Scene:
    """The scene of an image record (`DIR/000000.json`) or of a bare scene JSON."""
    obj = read_json(Path(record_path))
    return Scene.from_json(obj.get("scene", obj))


def rendered_camera(image: Path) -> Camera | None:
    """The camera image file `DIR/000000.png` was rendered with, from its record beside it, or
    None when it is not an image of a world split (no world.json, no record, or a record of
    another split or index)."""
    image = Path(image)
    record_path = image.with_name(image.name.removesuffix(RGB_SUFFIX) + RECORD_SUFFIX)
    if image.suffix != RGB_SUFFIX or not (image.parent / WORLD_JSON).is_file():
        return None
    try:
        world, record = read_world(image.parent), read_json(record_path)
        settings = record["settings"]
        if record["index"] != int(image.stem) or any(
            world.get(k) != v for k, v in settings.items()
        ):
            return None
        return Camera.from_json(record["scene"]["camera"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_world(folder: Path) -> dict[str, Any]:
    """`world.json` of a split folder; raises naming the file when it is not one."""
    path = Path(folder) / WORLD_JSON
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; expected a folder written by `pipeline world render --out DIR`"
        )
    obj = read_json(path)
    if obj.get("format") != FORMAT:
        raise ValueError(f"{path}: format {obj.get('format')!r}, expected {FORMAT!r}")
    return obj


def _claim_folder(folder: Path, settings: WorldSettings) -> dict[str, Any]:
    """world.json for these settings: written if new, checked if there (others are refused)."""
    wanted = settings.record()
    path = folder / WORLD_JSON
    if path.is_file():
        old = read_world(folder)
        differ = [f"{k} {old.get(k)!r} (asked {v!r})" for k, v in wanted.items() if old.get(k) != v]
        if differ:
            raise ValueError(
                f"{folder} holds a world rendered with other settings: {', '.join(differ)}; use "
                "another --out, or the settings it was rendered with"
            )
        return old
    record = {**wanted, "images": 0}
    write_json(path, record)
    return record


@dataclass
class WorldResult:
    """What `render_world` did."""

    out: Path
    images: int
    rendered: int
    skipped: int
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.images} images in {self.out}: rendered {self.rendered}, "
            f"{self.skipped} already there ({self.seconds:.1f} s)"
        )


def default_workers() -> int:
    """min(4, usable CPUs), the rule of every `--workers` left unset (`pipeline.toolkit.cpus`)."""
    return auto_workers(None)


def render_world(
    out: Path,
    images: int,
    settings: WorldSettings,
    workers: int | None = None,
    progress: bool = True,
) -> WorldResult:
    """Render images 0..images-1 of a split into `out`, skipping those already complete.

    `workers` processes (None: `default_workers()`; 0 or 1: in this process). A folder holding
    a split of other settings is refused, never mixed.
    """
    if images < 1:
        raise ValueError(f"--images must be ≥ 1, got {images}")
    if workers is not None and workers < 0:
        raise ValueError(f"--workers must be ≥ 0, got {workers}")
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = _claim_folder(out, settings)
    todo = [i for i in range(images) if not is_complete(out, settings, i)]
    n = min(default_workers() if workers is None else max(1, workers), max(1, len(todo)))
    bar = progress_bar(len(todo), f"world {settings.split}", "img", enabled=progress)
    with bar:
        if n <= 1:
            for index in todo:
                render_image(out, settings, index)
                bar.update(1)
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
            with ProcessPoolExecutor(n, mp_context=ctx, initializer=exit_with_parent()) as pool:
                for _ in pool.map(render_image, [out] * len(todo), [settings] * len(todo), todo):
                    bar.update(1)
    write_json(out / WORLD_JSON, {**record, "images": max(images, int(record.get("images", 0)))})
    return WorldResult(out, images, len(todo), images - len(todo), time.perf_counter() - start)
