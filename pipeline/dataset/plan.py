"""The crop plan: K square regions per image and the native-resolution tiles covering each.

The plan belongs to the dataset, not to a teacher (DESIGN.md, "The dataset directory"). It is a pure
function of `(plan parameters, image key, image size)`: every random draw comes from SHA-256 of a
string naming the draw, never from a random number generator, so the plan is identical on any
machine and with any library version.

Coordinates are pixels of the stored (EXIF-upright) image; boxes are `[x0, y0, x1, y1]`, half-open.

A plan shard `plan/NNNNNN.json` is one JSON object mapping every key of image shard NNNNNN, in
shard order, to its plan entry `{"size": [H, W], "regions": [{"box": [...], "tiles": [...]}]}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Box = list[int]


@dataclass(frozen=True)
class PlanParams:
    """Parameters of the crop plan; recorded in dataset.json and part of the plan hash."""

    seed: int = 0
    """Plan seed (`--seed`): a different seed draws different regions for every image."""
    regions: int = 2
    """Square regions per image, K (`--regions`)."""
    min_region: int = 644
    """Smallest region side in pixels; images whose short side is smaller get one region side."""
    tile: int = 560
    """Side of a local-global tile in pixels (the teachers' and student's crop size)."""
    min_overlap: float = 0.25
    """Minimum overlap of neighbouring tiles, as a fraction of the tile side (`--min-overlap`)."""

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"--seed must be an integer, got {self.seed!r}")
        if self.regions < 1:
            raise ValueError(f"--regions must be ≥ 1, got {self.regions}")
        if self.min_region < 1:
            raise ValueError(f"--min-region must be ≥ 1 pixel, got {self.min_region}")
        if self.tile < 2:
            raise ValueError(f"--tile must be ≥ 2 pixels, got {self.tile}")
        if not 0 <= self.min_overlap < 1:
            raise ValueError(f"--min-overlap must be in [0, 1), got {self.min_overlap}")
        if max_step(self.tile, self.min_overlap) < 1:
            limit = (self.tile - 1) / self.tile
            raise ValueError(
                f"--min-overlap {self.min_overlap} leaves {self.tile}-pixel tiles no room to "
                f"advance; use at most {limit:.6f}"
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def max_step(tile: int, min_overlap: float) -> int:
    """The largest integer distance between neighbouring tiles that keeps the minimum overlap."""
    step = int(tile - min_overlap * tile)
    while step > 0 and tile - step < min_overlap * tile:
        step -= 1
    while tile - (step + 1) >= min_overlap * tile:
        step += 1
    return step


def uniform_int(lo: int, hi: int, *names: object) -> int:
    """A uniform integer in `[lo, hi]` determined by `names` alone (SHA-256, 64 bits)."""
    if hi < lo:
        raise ValueError(f"empty range [{lo}, {hi}]")
    text = "|".join(str(n) for n in names)
    u = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return lo + (u * (hi - lo + 1) >> 64)


def tile_positions(side: int, tile: int, min_overlap: float) -> list[int]:
    """Offsets of the tiles along one side of a `side`-pixel region (first 0, last `side - tile`).

    n is the smallest count ≥ 2 whose evenly spaced, rounded positions keep every neighbour
    overlap ≥ `min_overlap * tile`. A region no larger than a tile has the single offset 0.
    """
    if side <= tile:
        return [0]
    span = side - tile
    step = max_step(tile, min_overlap)
    # Rounded even spacing has gaps floor(d) and ceil(d), d = span / (n - 1), so the smallest n is
    # 1 + ceil(span / step). Start one below it anyway: the integer-position check decides.
    n = max(2, -(-span // step))
    while True:
        positions = [(2 * i * span + (n - 1)) // (2 * (n - 1)) for i in range(n)]
        gaps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
        if all(tile - gap >= min_overlap * tile for gap in gaps):
            return positions
        n += 1


def region_tiles(box: Box, params: PlanParams) -> list[Box]:
    """The tiles of a square region, row-major; a region ≤ one tile is its own single tile."""
    x0, y0, x1, _ = box
    side = x1 - x0
    if side <= params.tile:
        return [list(box)]
    offsets = tile_positions(side, params.tile, params.min_overlap)
    t = params.tile
    return [[x0 + dx, y0 + dy, x0 + dx + t, y0 + dy + t] for dy in offsets for dx in offsets]


def plan_image(key: str, height: int, width: int, params: PlanParams) -> dict[str, Any]:
    """The plan entry of one image: its size and K regions with their tiles."""
    if height < 1 or width < 1:
        raise ValueError(f"image {key!r} has an empty size {height}x{width}")
    short = min(height, width)
    regions = []
    for k in range(params.regions):
        name = (params.seed, key, f"{height}x{width}", k)
        side = short
        if short >= params.min_region:
            side = uniform_int(params.min_region, short, *name, "s")
        x0 = uniform_int(0, width - side, *name, "x")
        y0 = uniform_int(0, height - side, *name, "y")
        box = [x0, y0, x0 + side, y0 + side]
        regions.append({"box": box, "tiles": region_tiles(box, params)})
    return {"size": [height, width], "regions": regions}


def views(plan_entry: Mapping[str, Any]) -> list[tuple[str, Box]]:
    """`(view name, box)` for every planned view: `r{k}.sc` (the region) then `r{k}.t{j}`."""
    out: list[tuple[str, Box]] = []
    for k, region in enumerate(plan_entry["regions"]):
        out.append((f"r{k}.sc", list(region["box"])))
        out.extend((f"r{k}.t{j}", list(tile)) for j, tile in enumerate(region["tiles"]))
    return out


def plan_shard_bytes(plans: Mapping[str, Any]) -> bytes:
    """Deterministic bytes of a plan shard: one key per line, in the given (shard) order."""
    lines = [
        json.dumps(key) + ":" + json.dumps(entry, separators=(",", ":"))
        for key, entry in plans.items()
    ]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def load_plan_shard(path: Path) -> dict[str, Any]:
    """Read a plan shard: `{key: plan entry}` in shard order (validated structure)."""
    path = Path(path)
    try:
        plans = json.loads(path.read_bytes(), object_pairs_hook=_no_duplicates)
    except ValueError as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a valid plan shard ({e}); re-run `pipeline prepare`") from e
    if not isinstance(plans, dict):
        raise ValueError(f"{path}: a plan shard must be a JSON object of key → plan")
    for key, entry in plans.items():
        if not isinstance(entry, dict) or "size" not in entry or "regions" not in entry:
            raise ValueError(f"{path}: the plan of {key!r} lacks 'size' or 'regions'")
    return plans


def plan_hash(shard_sha256: Iterable[str], params: PlanParams) -> str:
    """The dataset's plan hash: SHA-256 over the plan parameters and per-shard hashes in order."""
    doc = {"params": params.to_json(), "shards": list(shard_sha256)}
    return hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
