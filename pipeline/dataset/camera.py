"""The camera of each image and of each planned view: pinhole intrinsics and where they came from.

Pixel convention (the world renderer's, `pipeline.world.camera`): the image plane's coordinates
run from 0 at the left/top edge of the image to `width`/`height` at the right/bottom edge, so pixel
column j covers `[j, j+1)` and its centre is `j + 0.5`; `cx = width / 2` is the image centre.
(OpenCV puts the centre of the first pixel at 0: add 0.5 to its cx and cy. COLMAP already counts
from the image edge, as here.)

In this convention the plan's views transform intrinsics exactly. A view cuts the box
`(x0, y0, x1, y1)` and resizes it to `width` x `height` with a resampler whose pixel centres follow
`align_corners=False` (PIL's resize, `F.interpolate(..., align_corners=False)`): output pixel j
samples the input at `x0 + (j + 0.5) * sx⁻¹` with `sx = width / (x1 - x0)`. So a point at `x`
lands at `x' = (x - x0) * sx` and

    fx' = fx * sx,   cx' = (cx - x0) * sx,   fy' = fy * sy,   cy' = (cy - y0) * sy.

(In the first-pixel-at-0 convention the same map reads `x' = (x - x0 + 0.5) * sx - 0.5`.)

Sources, one per image, in this order of precedence:

- `dataset`: a row of the `--intrinsics FILE` given to `pipeline prepare` (`read_intrinsics_file`);
- `world`: the camera the world renderer drew the image with (`pipeline.world.files`);
- `exif`: the 35 mm-equivalent focal length of EXIF (`FocalLengthIn35mmFilm`), read as 36 mm of
  film along the image's long side: `fx = fy = f35 / 36 * max(width, height)`, principal point at
  the centre. For a 3:2 image this equals the standard (diagonal) definition; for 4:3 the
  diagonal definition gives a focal length 4 % longer.
- none: unknown (no record).

On disk: `camera/NNNNNN.json` beside plan shard NNNNNN, written only for a shard where some image
has intrinsics; one JSON object mapping those keys, in shard order, to
`{"fx", "fy", "cx", "cy", "width", "height", "source"}`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

SOURCES = ("dataset", "world", "exif")
FILM_WIDTH_MM = 36.0
FIELDS = ("fx", "fy", "cx", "cy")


@dataclass(frozen=True)
class Intrinsics:
    """fx, fy, cx, cy in pixels of a `width` x `height` image (module docstring's convention)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    source: str

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError(f"intrinsics must be finite numbers, got {values}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be > 0, got fx={self.fx}, fy={self.fy}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be ≥ 1 px, got {self.height}x{self.width}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Intrinsics:
        return cls(
            *(float(obj[k]) for k in FIELDS),
            int(obj["width"]),
            int(obj["height"]),
            str(obj["source"]),
        )

    def resized(self, height: int, width: int) -> Intrinsics:
        """The same image resized to `height` x `width`."""
        return view_intrinsics(self, (0, 0, self.width, self.height), height, width)


def view_intrinsics(source: Intrinsics, box: tuple | list, height: int, width: int) -> Intrinsics:
    """The intrinsics of the view that cuts `box = (x0, y0, x1, y1)` (pixels of `source`'s image,
    half-open, as in the plan) and resizes it to `height` x `width` (exact for `align_corners=False`
    resampling; module docstring). The source stays that of the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty view box {list(box)}")
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    return replace(
        source,
        fx=source.fx * sx,
        fy=source.fy * sy,
        cx=(source.cx - x0) * sx,
        cy=(source.cy - y0) * sy,
        width=int(width),
        height=int(height),
    )


def planned_intrinsics(
    source: Intrinsics,
    plan_entry: Mapping[str, Any],
    tile: int,
    full_size: tuple[int, int] | None = None,
) -> dict[str, Intrinsics]:
    """`{view name: intrinsics}` of every planned view of one image (`r{k}.sc`, `r{k}.t{j}`, each
    resized to `tile` x `tile`), and of `full` at `full_size` (height, width) when given."""
    from pipeline.dataset.plan import views

    height, width = plan_entry["size"]
    if (source.height, source.width) != (height, width):
        source = source.resized(height, width)
    out = {}
    if full_size is not None:
        out["full"] = source.resized(*full_size)
    for name, box in views(plan_entry):
        out[name] = view_intrinsics(source, box, tile, tile)
    return out


def exif_intrinsics(focal35: float, height: int, width: int) -> Intrinsics | None:
    """Intrinsics from a 35 mm-equivalent focal length in mm (None when it is not > 0)."""
    if not (isinstance(focal35, (int, float)) and math.isfinite(focal35) and focal35 > 0):
        return None
    f = focal35 / FILM_WIDTH_MM * max(height, width)
    return Intrinsics(f, f, width / 2, height / 2, width, height, "exif")


def world_intrinsics(camera: Any, height: int, width: int) -> Intrinsics:
    """A world `Camera`'s intrinsics, for its image stored at `height` x `width`."""
    native = Intrinsics(
        camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height, "world"
    )
    return native.resized(height, width)


# ---- the --intrinsics file ----


def _number(text: Any, where: str, name: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} is {text!r}, not a finite number")
    return value


def _row(name: str, row: Mapping[str, Any], where: str) -> dict[str, Any]:
    missing = [k for k in FIELDS if row.get(k) in (None, "")]
    if not name or missing:
        what = "a name ('key' or 'path')" if not name else ", ".join(missing)
        raise ValueError(f"{where}: lacks {what}; each entry needs a key or path and fx,fy,cx,cy")
    entry = {k: _number(row[k], where, k) for k in FIELDS}
    if not (entry["fx"] > 0 and entry["fy"] > 0):
        raise ValueError(f"{where}: fx and fy must be > 0")
    size = [row.get(k) for k in ("width", "height")]
    if any(v not in (None, "") for v in size):
        w, h = (_number(v, where, k) for v, k in zip(size, ("width", "height"), strict=True))
        if not (w >= 1 and h >= 1 and w == int(w) and h == int(h)):
            raise ValueError(f"{where}: width and height must be whole numbers ≥ 1")
        entry["size"] = (int(h), int(w))
    return entry


def read_intrinsics_file(path: Path | str) -> dict[str, dict[str, Any]]:
    """`{name: {"fx", "fy", "cx", "cy", optional "size": (h, w)}}` from a CSV file (a header row
    naming `key` or `path`, `fx`, `fy`, `cx`, `cy`, optional `width`, `height`) or a JSON file
    (an object mapping names to objects with those fields). Raises naming the file and the entry."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"--intrinsics {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--intrinsics {path}: cannot read it as text ({e})") from None
    table: dict[str, dict[str, Any]] = {}
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise ValueError(f"--intrinsics {path}: not valid JSON ({e})") from None
        for name, row in obj.items():
            if not isinstance(row, dict):
                raise ValueError(f"--intrinsics {path}: {name!r} must map to an object")
            table[name] = _row(name, row, f"--intrinsics {path}: entry {name!r}")
        return table
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if not ({"key", "path"} & set(header)) or not set(FIELDS) <= set(header):
        raise ValueError(
            f"--intrinsics {path}: the first row must name the columns key (or path), fx, fy, "
            f"cx, cy (and optionally width, height); it is {','.join(header) or 'empty'}"
        )
    for line, row in enumerate(reader, start=2):
        name = (row.get("key") or row.get("path") or "").strip()
        where = f"--intrinsics {path}: line {line}"
        if name in table:
            raise ValueError(f"{where}: {name!r} appears twice")
        table[name] = _row(name, row, where)
    return table


def file_record(path: Path | str) -> dict[str, str]:
    """What dataset.json records of the intrinsics file: its absolute path and SHA-256."""
    data = Path(path).read_bytes()
    return {"path": os.path.abspath(path), "sha256": hashlib.sha256(data).hexdigest()}


def file_intrinsics(entry: Mapping[str, Any], height: int, width: int, where: str) -> Intrinsics:
    """An `--intrinsics` entry for an image stored at `height` x `width` (scaled from the entry's
    own size when it gives one of the same aspect ratio)."""
    h, w = entry.get("size", (height, width))
    found = Intrinsics(*(entry[k] for k in FIELDS), w, h, "dataset")
    if (h, w) == (height, width):
        return found
    if abs(w * height - h * width) > 0.01 * w * height:
        raise ValueError(
            f"{where}: the intrinsics are for a {w}x{h} image but the image is {width}x{height} "
            "(another aspect ratio, e.g. rotated by its EXIF orientation); give the size of the "
            "image as stored, upright"
        )
    return found.resized(height, width)


# ---- camera shards ----


def camera_shard_bytes(cameras: Mapping[str, Intrinsics]) -> bytes:
    """Deterministic bytes of a camera shard: one key per line, in the given (shard) order."""
    lines = [
        json.dumps(key) + ":" + json.dumps(cam.to_json(), separators=(",", ":"))
        for key, cam in cameras.items()
    ]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def load_camera_shard(path: Path) -> dict[str, Intrinsics]:
    """Read a camera shard: `{key: Intrinsics}` for the keys with known intrinsics."""
    try:
        obj = json.loads(Path(path).read_bytes())
        return {key: Intrinsics.from_json(value) for key, value in obj.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path}: not a valid camera shard ({e}); re-run `pipeline prepare`"
        ) from e


class CameraFinder:
    """The source intrinsics of each image `pipeline prepare` stores (module docstring's order).

    `table` is `read_intrinsics_file`'s; an entry is matched by the image's key, its origin (the
    input as written joined with the relative path) or its file's absolute path.
    """

    def __init__(self, table: Mapping[str, Mapping[str, Any]] | None = None, file: str = ""):
        self.table, self.file = dict(table or {}), file
        self.matched: set[str] = set()
        self.counts = dict.fromkeys(SOURCES, 0)

    def find(
        self, key: str, origin: str, path: str, height: int, width: int, focal35: float = 0.0
    ) -> Intrinsics | None:
        found = self._find(key, origin, path, height, width, focal35)
        if found is not None:
            self.counts[found.source] += 1
        return found

    def _find(self, key, origin, path, height, width, focal35) -> Intrinsics | None:
        for name in (key, origin, os.path.abspath(path) if path else ""):
            if name and name in self.table:
                self.matched.add(name)
                where = f"--intrinsics {self.file}: entry {name!r}"
                return file_intrinsics(self.table[name], height, width, where)
        if path and path.endswith(".png"):
            from pipeline.world.files import rendered_camera

            camera = rendered_camera(Path(path))
            if camera is not None:
                return world_intrinsics(camera, height, width)
        return exif_intrinsics(focal35, height, width)

    def record(self) -> dict[str, Any]:
        """dataset.json's `cameras`: images per source and the file's entries that matched no
        image (the first 20 of them)."""
        unmatched = sorted(set(self.table) - self.matched)
        return {"sources": dict(self.counts), "unmatched": len(unmatched), "e.g.": unmatched[:20]}
