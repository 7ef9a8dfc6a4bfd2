"""Image shards `images/NNNNNN.tar`: WebDataset tars of upright 8-bit RGB images.

Per key, in this order:

- `{key}.jpg` (original baseline JPEG bytes) or `{key}.png` (lossless RGB), exactly one of them;
- `{key}.json`: `{"origin": "<as the user gave it>", "size": [H, W]}` (sorted keys, compact).

Written with deterministic tar headers and published atomically, so re-running gives identical
bytes. Read back with `read_image_shard` (validated with `pipeline.toolkit.tario`) or with
`webdataset.WebDataset(path).decode("rgb8")`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.images.decode import decode_rgb
from pipeline.toolkit import tario
from pipeline.toolkit.atomic import publishing

IMAGE_EXTS = ("jpg", "png")
META_EXT = "json"


def meta_bytes(origin: str, height: int, width: int) -> bytes:
    return json.dumps({"origin": origin, "size": [height, width]}, sort_keys=True).encode()


class ImageShardWriter:
    """Context manager writing one image shard; it appears at `path` only when complete.

    On an exception inside the `with` block the partial shard is discarded.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0
        self.sha256 = ""
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ImageShardWriter:
        tmp = self._stack.enter_context(publishing(self.path))
        self._file = tario.HashingFile(self._stack.enter_context(open(tmp, "wb")))
        self._tar = tario.TarWriter(self._file)  # type: ignore[arg-type]
        return self

    def add(self, key: str, ext: str, data: bytes, origin: str, height: int, width: int) -> None:
        """Append one sample: the stored image and its metadata."""
        if ext not in IMAGE_EXTS:
            raise ValueError(f"image shards store only {IMAGE_EXTS}, not {ext!r} (key {key!r})")
        self._tar.add(f"{key}.{ext}", data)
        self._tar.add(f"{key}.{META_EXT}", meta_bytes(origin, height, width))
        self.count += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._tar.close()
            self.sha256 = self._file.sha256.hexdigest()
        self._stack.__exit__(exc_type, exc, tb)


@dataclass(frozen=True)
class ImageRecord:
    """One sample of an image shard, still encoded (decode with `decode_rgb`)."""

    key: str
    ext: str
    data: bytes
    meta: dict[str, Any]


def _sample_members(
    shard: Path, key: str, exts: dict[str, tario.Member]
) -> tuple[str, tario.Member]:
    images = [e for e in IMAGE_EXTS if e in exts]
    if len(images) != 1 or META_EXT not in exts or len(exts) != 2:
        raise tario.ShardError(
            f"{shard}: key {key!r} has members {sorted(exts)}; an image shard holds exactly one "
            f"of {IMAGE_EXTS} and a {META_EXT} per key. Re-create it with `pipeline prepare`"
        )
    return images[0], exts[images[0]]


def _read_meta(shard: Path, key: str, data: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(data)
        height, width = meta["size"]
        if not isinstance(meta["origin"], str) or min(int(height), int(width)) < 1:
            raise ValueError("bad origin or size")
    except (ValueError, KeyError, TypeError) as e:
        raise tario.ShardError(f"{shard}: {key}.json is not valid image metadata ({e})") from e
    return meta


def iter_image_records(path: Path) -> Iterator[ImageRecord]:
    """The samples of an image shard in shard order, bytes undecoded (headers validated first)."""
    path = Path(path)
    groups = tario.group_by_key(tario.scan(path), path)
    with open(path, "rb") as f:
        for key, exts in groups.items():
            ext, member = _sample_members(path, key, exts)
            meta = _read_meta(path, key, tario.read_member(f, exts[META_EXT], path))
            yield ImageRecord(key, ext, tario.read_member(f, member, path), meta)


def read_image_shard(path: Path) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """`(key, uint8 RGB [H, W, 3], meta)` per sample; the shape is checked against the meta."""
    for record in iter_image_records(path):
        rgb = decode_rgb(record.data)
        if list(rgb.shape[:2]) != list(record.meta["size"]):
            raise tario.ShardError(
                f"{path}: {record.key}.{record.ext} decodes to {rgb.shape[1]}x{rgb.shape[0]} but "
                f"its metadata says {record.meta['size']} (H, W); re-create the shard"
            )
        yield record.key, rgb, record.meta


def shard_keys(path: Path) -> list[str]:
    """The keys of an image shard in order (reads headers only)."""
    path = Path(path)
    return list(tario.group_by_key(tario.scan(path), path))
