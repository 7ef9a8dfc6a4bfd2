"""`pipeline prepare`: image inputs → a dataset directory (image shards, crop plan, dataset.json).

Steps: list every input image (cheap, no decoding) and check keys are unique; decode in a process
pool, in sorted key order; cut the accepted images into shards of `shard_size`; write image shard
i then plan shard i (each atomically); write `dataset.json` last. Bad images (and broken symlinks,
folders that cannot be listed) are recorded in `dataset.json` under `rejected`, never fatal; what
the listing skipped on purpose (other extensions, hidden entries...) is counted under `skipped`.

Re-running into the same `--out` is allowed only with the same inputs and settings: it rewrites
identical bytes (if the input files are unchanged), removes shards numbered past the new end, and
never touches `labels/`. If label columns exist and the inputs now list different images (files
added, removed, renamed or resized in bytes) it refuses, since the labels would no longer match.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pipeline
from pipeline.dataset.camera import (
    CameraFinder,
    camera_shard_bytes,
    file_record,
    read_intrinsics_file,
)
from pipeline.dataset.decoding import accepted_only, decoding
from pipeline.dataset.layout import SCHEMA_VERSION, DatasetLayout, shard_name
from pipeline.dataset.plan import PlanParams, plan_hash, plan_image, plan_shard_bytes
from pipeline.images.decode import PIL_MAX_IMAGE_PIXELS, Accepted, DecodeParams, Rejected
from pipeline.images.folders import Skipped, display_name
from pipeline.images.shards import ImageShardWriter
from pipeline.images.sources import Item, list_items, listing_sha256
from pipeline.toolkit.atomic import is_temporary, read_json, write_bytes, write_json
from pipeline.toolkit.cpus import auto_workers
from pipeline.toolkit.progress import progress_bar
from pipeline.world.origin import ORIGIN_KEY, origin_record


@dataclass(frozen=True)
class PrepareSettings:
    """Options of `pipeline prepare`, each the flag of the same name (`shard_size` is
    `--shard-size`), all recorded in dataset.json (`--workers` and `--progress` are launch
    options, `pipeline.toolkit.launch.Launch`)."""

    shard_size: int = 1000
    """Images per shard; the last shard may hold fewer."""
    regions: int = 2
    """K: square regions planned per image."""
    seed: int = 0
    """Seed of the crop plan (the plan is a pure function of it, the image keys and sizes)."""
    min_overlap: float = 0.25
    """Minimum overlap of neighbouring tiles, as a fraction of the tile side."""
    tile: int = 560
    """Side of the planned tiles in pixels (the paper's 560; smaller for small-scale studies)."""
    min_region: int = 644
    """Smallest region side in pixels (the paper's 644); shorter images get one region side."""
    min_side: int = 64
    """Reject images whose short side is below this many pixels."""
    max_pixels: int = PIL_MAX_IMAGE_PIXELS
    """Reject images with more pixels, as possible decompression bombs (the one limit: PIL's own
    follows it, so it may be raised above PIL's default)."""
    intrinsics: str | None = None
    """A CSV or JSON file of camera intrinsics per image (README, "Preparing a dataset", Cameras);
    unset (None), or for images it does not name: the world renderer's camera or EXIF's 35 mm
    focal length, if any."""

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"--shard-size must be ≥ 1, got {self.shard_size}")
        self.plan_params()  # validates --regions, --seed, --min-overlap, --tile, --min-region
        self.decode_params()  # validates --min-side, --max-pixels

    def plan_params(self) -> PlanParams:
        return PlanParams(
            seed=self.seed,
            regions=self.regions,
            min_region=self.min_region,
            tile=self.tile,
            min_overlap=self.min_overlap,
        )

    def decode_params(self) -> DecodeParams:
        return DecodeParams(min_side=self.min_side, max_pixels=self.max_pixels)

    def recorded(self) -> dict[str, Any]:
        """The settings that determine the output, as stored in dataset.json."""
        return {
            "shard_size": self.shard_size,
            "decode": {"min_side": self.min_side, "max_pixels": self.max_pixels},
            "plan_params": self.plan_params().to_json(),
            "intrinsics": os.path.abspath(self.intrinsics) if self.intrinsics else "",
        }


@dataclass
class PrepareResult:
    """What `prepare` did."""

    out: Path
    num_listed: int
    num_samples: int
    num_shards: int
    rejected: list[dict[str, str]] = field(default_factory=list)
    plan_hash: str = ""
    seconds: float = 0.0
    skipped: Skipped = field(default_factory=Skipped)
    cameras: dict[str, int] = field(default_factory=dict)
    """Images with intrinsics, per source (`pipeline.dataset.camera`)."""

    @property
    def num_rejected(self) -> int:
        return len(self.rejected)

    def summary(self) -> str:
        shards = "shard" if self.num_shards == 1 else "shards"
        out = display_name(str(self.out))
        text = f"prepared {self.num_samples} images into {self.num_shards} {shards} at {out}; "
        where = display_name(str(DatasetLayout(self.out).dataset_json))
        if not self.rejected:
            text += "none rejected"
        else:
            text += f"{self.num_rejected} rejected (see {where}, key 'rejected')"
        skipped = self.skipped.describe()
        text += f"; skipped {skipped} (see key 'skipped')" if skipped else ""
        cameras = ", ".join(f"{n} from {source}" for source, n in self.cameras.items())
        return text + (f"; intrinsics: {cameras} (see camera/)" if cameras else "")


def write_shard(
    layout: DatasetLayout,
    index: int,
    samples: Iterable[tuple[Item, Accepted]],
    params: PlanParams,
    finder: CameraFinder,
) -> dict[str, Any]:
    """Write image shard `index`, then its plan shard and, if some image has intrinsics, its
    camera shard; return its dataset.json entry."""
    plans: dict[str, Any] = {}
    cameras = {}
    with ImageShardWriter(layout.image_shard(index)) as writer:
        for item, acc in samples:
            writer.add(item.key, acc.ext, acc.data, item.origin, acc.height, acc.width)
            plans[item.key] = plan_image(item.key, acc.height, acc.width, params)
            path = item.path if item.offset < 0 else ""
            found = finder.find(item.key, item.origin, path, acc.height, acc.width, acc.focal35)
            if found is not None:
                cameras[item.key] = found
    plan_bytes = plan_shard_bytes(plans)
    write_bytes(layout.plan_shard(index), plan_bytes)
    entry = {
        "name": shard_name(index),
        "count": writer.count,
        "image_sha256": writer.sha256,
        "plan_sha256": hashlib.sha256(plan_bytes).hexdigest(),
    }
    if cameras:
        camera_bytes = camera_shard_bytes(cameras)
        write_bytes(layout.camera_shard(index), camera_bytes)
        entry["camera_sha256"] = hashlib.sha256(camera_bytes).hexdigest()
    else:
        layout.camera_shard(index).unlink(missing_ok=True)
    return entry


def write_shards(
    layout: DatasetLayout,
    samples: Iterator[tuple[Item, Accepted]],
    settings: PrepareSettings,
    finder: CameraFinder,
) -> list[dict[str, Any]]:
    """Cut the accepted stream into shards of `shard_size` and write each as it fills."""
    params = settings.plan_params()
    shards: list[dict[str, Any]] = []
    while True:
        chunk = itertools.islice(samples, settings.shard_size)
        first = next(chunk, None)
        if first is None:
            return shards
        samples_i = itertools.chain([first], chunk)
        shards.append(write_shard(layout, len(shards), samples_i, params, finder))


def _is_shard_file(path: Path, suffix: str) -> bool:
    return path.suffix == suffix and path.stem.isdigit() and len(path.stem) == 6


def _shard_folders(layout: DatasetLayout) -> tuple[tuple[Path, str], ...]:
    return ((layout.images_dir, ".tar"), (layout.plan_dir, ".json"), (layout.camera_dir, ".json"))


def _leftovers_only(layout: DatasetLayout) -> bool:
    """Whether a directory without dataset.json holds only what an interrupted prepare leaves."""
    for path in layout.root.iterdir():
        if path.name not in ("images", "plan", "camera") or not path.is_dir():
            return False
    for folder, suffix in _shard_folders(layout):
        if folder.is_dir():
            for path in folder.iterdir():
                if not (_is_shard_file(path, suffix) or is_temporary(path)):
                    return False
    return True


def absolute_inputs(inputs: list[str]) -> list[str]:
    """The inputs as dataset.json records them: absolute (folders, tars, files or glob patterns
    joined to the working directory), so the commands `pipeline verify` prints to re-create the
    dataset work from any directory."""
    return [os.path.abspath(i) for i in inputs]


def check_out(layout: DatasetLayout, inputs: list[str], settings: PrepareSettings) -> dict | None:
    """Refuse an `--out` that holds something else; return its dataset.json if it is a re-run."""
    root = layout.root
    if root.exists() and not root.is_dir():
        raise ValueError(f"--out {root}: exists and is not a directory; choose a new directory")
    if layout.dataset_json.exists():
        old = read_json(layout.dataset_json)
        mine = {"inputs": absolute_inputs(inputs), **settings.recorded()}
        mine["intrinsics_sha256"] = intrinsics_sha256(settings)
        theirs = (
            {k: old.get(k, "" if "intrinsics" in k else None) for k in mine}
            if isinstance(old, dict)
            else {}
        )
        if isinstance(theirs.get("inputs"), list):  # recorded as typed by older versions
            theirs["inputs"] = absolute_inputs(theirs["inputs"])
        changed = [k for k in mine if theirs.get(k) != mine[k]]
        if changed:
            raise ValueError(
                f"--out {root}: holds a dataset prepared from different inputs or settings "
                f"({', '.join(changed)} differ); prepare into a new directory"
            )
        return old
    if root.is_dir() and not _leftovers_only(layout):
        raise ValueError(
            f"--out {root}: is not empty and holds no dataset.json; prepare into a new or empty "
            "directory"
        )
    return None


def check_labels_still_match(layout: DatasetLayout, old: dict | None, listing: str) -> None:
    """With label columns present, the images must be the ones they were made for."""
    if old is None or not layout.columns() or old.get("listing_sha256") == listing:
        return
    raise ValueError(
        f"--out {layout.root}: the inputs now list different images than when this dataset was "
        f"prepared (files added, removed or changed), and it has label columns "
        f"({', '.join(layout.columns())}) made for the old images; prepare into a new directory"
    )


def remove_stale_shards(layout: DatasetLayout, num_shards: int) -> None:
    """Delete shard files numbered past the new end (left by an earlier, larger run)."""
    for folder, suffix in _shard_folders(layout):
        for path in sorted(folder.glob(f"*{suffix}")):
            if _is_shard_file(path, suffix) and int(path.stem) >= num_shards:
                path.unlink()


def dataset_record(
    inputs: list[str],
    settings: PrepareSettings,
    shards: list[dict[str, Any]],
    rejected: list[Rejected],
    items: list[Item],
    skipped: Skipped,
    finder: CameraFinder,
) -> dict[str, Any]:
    params = settings.plan_params()
    world = origin_record(inputs)  # the world split the images come from, if they do
    cameras = finder.record() if settings.intrinsics or any(finder.counts.values()) else None
    return {
        "schema": SCHEMA_VERSION,
        "code_version": pipeline.__version__,
        "inputs": absolute_inputs(inputs),
        **settings.recorded(),
        "plan_hash": plan_hash([s["plan_sha256"] for s in shards], params),
        "listing_sha256": listing_sha256(items),
        "num_listed": len(items),
        "num_samples": sum(s["count"] for s in shards),
        "num_rejected": len(rejected),
        "num_skipped": skipped.total,
        "skipped": skipped.to_json(),
        "shards": shards,
        "rejected": sorted(
            ({"origin": r.origin, "reason": r.reason} for r in rejected),
            key=lambda r: (r["origin"], r["reason"]),
        ),
        **({ORIGIN_KEY: world} if world else {}),
        **({"intrinsics_sha256": intrinsics_sha256(settings)} if settings.intrinsics else {}),
        **({"cameras": cameras} if cameras else {}),
    }


def camera_finder(settings: PrepareSettings) -> CameraFinder:
    """The finder of each image's intrinsics, with `--intrinsics` read (and checked) first."""
    if not settings.intrinsics:
        return CameraFinder()
    return CameraFinder(read_intrinsics_file(settings.intrinsics), settings.intrinsics)


def intrinsics_sha256(settings: PrepareSettings) -> str:
    """SHA-256 of the `--intrinsics` file ('' without one): a re-run must give the same."""
    return file_record(settings.intrinsics)["sha256"] if settings.intrinsics else ""


def _no_images_error(rejected: list[Rejected]) -> ValueError:
    reasons = "\n".join(
        f"  {r.origin}: {r.reason}" for r in sorted(rejected, key=lambda r: r.origin)[:5]
    )
    return ValueError(f"no usable images: all {len(rejected)} were rejected, e.g.\n{reasons}")


def prepare(
    inputs: list[str],
    out: Path,
    settings: PrepareSettings | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> PrepareResult:
    """Build (or identically rebuild) the dataset directory `out` from image inputs, decoding
    in `workers` processes (0 or 1: in this process; None: min(4, usable CPUs))."""
    settings = settings or PrepareSettings()
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    start = time.perf_counter()
    layout = DatasetLayout(Path(out))
    finder = camera_finder(settings)
    old = check_out(layout, inputs, settings)
    skipped = Skipped()
    items = list_items(list(inputs), skipped)
    check_labels_still_match(layout, old, listing_sha256(items))
    rejected: list[Rejected] = []
    with decoding(items, settings.decode_params(), auto_workers(workers)) as results:
        bar = progress_bar(len(items), "prepare", "img", enabled=progress)
        with bar:
            counted = bar.iterate(results)
            accepted = accepted_only(items, counted, rejected)
            shards = write_shards(layout, accepted, settings, finder)
    if not shards:
        raise _no_images_error(rejected)
    record = dataset_record(inputs, settings, shards, rejected, items, skipped, finder)
    write_json(layout.dataset_json, record)
    remove_stale_shards(layout, len(shards))
    return PrepareResult(
        out=layout.root,
        num_listed=len(items),
        num_samples=record["num_samples"],
        num_shards=len(shards),
        rejected=record["rejected"],
        plan_hash=record["plan_hash"],
        seconds=time.perf_counter() - start,
        skipped=skipped,
        cameras={k: n for k, n in finder.counts.items() if n},
    )
