"""Image shards `images/NNNNNN.tar`: WebDataset tars of upright 8-bit RGB images.

Per key, in this order:

- `{key}.jpg` (original baseline JPEG bytes) or `{key}.png` (lossless RGB), exactly one of them;
- `{key}.json`: `{"origin": "<as the user gave it>", "size": [H, W]}` (sorted keys, compact).

Written with deterministic tar headers and published atomically, so re-running gives identical
bytes. Read back by key with `ImageShardReader` (headers validated with `pipeline.toolkit.tario`,
members read by offset), in order with `read_image_shard`, or with
`webdataset.WebDataset(path).decode("rgb8")`.
"""

from __future__ import annotations

import contextlib
import json
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

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
class _Sample:
    ext: str
    image: tario.Member
    meta: tario.Member


def _sample(shard: Path, key: str, exts: dict[str, tario.Member]) -> _Sample:
    """The members of one key, refused unless they are what the writer writes."""
    images = [e for e in IMAGE_EXTS if e in exts]
    if len(images) != 1 or META_EXT not in exts or len(exts) != 2:
        raise tario.ShardError(
            f"{shard}: key {key!r} has members {sorted(exts)}; an image shard holds exactly one "
            f"image (one of {', '.join(IMAGE_EXTS)}) and one {META_EXT} per key. Re-create it "
            "with `pipeline prepare`"
        )
    return _Sample(images[0], exts[images[0]], exts[META_EXT])


def _parse_meta(shard: Path, key: str, data: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(data)
        height, width = meta["size"]
        if not isinstance(meta["origin"], str) or min(int(height), int(width)) < 1:
            raise ValueError("bad origin or size")
    except (ValueError, KeyError, TypeError) as e:
        raise tario.ShardError(
            f"{shard}: {key}.{META_EXT} is not valid image metadata ({e})"
        ) from e
    return meta


class ImageShardReader:
    """Random access by key to the samples of one image shard (the one reader of the format).

    Construction reads the tar headers only (validated by `tario.scan`) and checks every key
    against the format: exactly one image member (`jpg` or `png`) and its `json`, nothing else; a
    shard that breaks it is refused (`ShardError` naming the shard, the key and the fix) before
    anything is read. Payloads are read by offset (`os.pread`), never extracted.

    The file is opened lazily, on the first read, by the process that reads: a reader built in a
    parent process and inherited by forked DataLoader workers (or pickled to spawned ones) opens
    its own file in each of them. `close()` (or `with`) closes it; it is closed at garbage
    collection otherwise.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        groups = tario.group_by_key(tario.scan(self.path), self.path)
        self._samples = {key: _sample(self.path, key, exts) for key, exts in groups.items()}
        self.keys: list[str] = list(self._samples)
        """The keys in shard order."""
        self._fd: int | None = None
        self._pid: int | None = None
        self._closer: weakref.finalize | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._samples

    def ext(self, key: str) -> str:
        """The stored format of `key`'s image: `jpg` or `png`."""
        return self._get(key).ext

    def read(self, key: str) -> tuple[bytes, str]:
        """`(stored image bytes, ext)` of `key`, undecoded (decode with `decode_rgb`)."""
        sample = self._get(key)
        return self._pread(sample.image), sample.ext

    def meta(self, key: str) -> dict[str, Any]:
        """The validated metadata of `key`: `{"origin": str, "size": [H, W]}`."""
        return _parse_meta(self.path, key, self._pread(self._get(key).meta))

    def rgb(self, key: str) -> np.ndarray:
        """`key`'s image as uint8 RGB `[H, W, 3]`, its shape checked against its metadata."""
        data, ext = self.read(key)
        rgb = decode_rgb(data)
        size = self.meta(key)["size"]
        if list(rgb.shape[:2]) != list(size):
            raise tario.ShardError(
                f"{self.path}: {key}.{ext} decodes to {rgb.shape[1]}x{rgb.shape[0]} but its "
                f"metadata says {size} (H, W); re-create the shard with `pipeline prepare`"
            )
        return rgb

    def _get(self, key: str) -> _Sample:
        try:
            return self._samples[key]
        except KeyError:
            raise KeyError(f"{self.path}: no key {key!r} in this image shard") from None

    def _pread(self, member: tario.Member) -> bytes:
        if self._pid != os.getpid():  # first read, or first read in a forked child
            self.close()  # (in a child: its inherited copy of the parent's descriptor)
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
            self._closer = weakref.finalize(self, os.close, self._fd)
        data = os.pread(self._fd, member.size, member.offset)  # type: ignore[arg-type]
        if len(data) != member.size:
            raise tario.ShardError(f"{self.path}: member {member.name!r} is truncated")
        return data

    def close(self) -> None:
        """Close the file (a later read opens it again)."""
        if self._closer is not None:
            self._closer()
        self._fd = self._pid = self._closer = None

    def __enter__(self) -> ImageShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": None, "_closer": None}


def read_image_shard(path: Path) -> Iterator[tuple[str, np.ndarray, dict[str, Any]]]:
    """`(key, uint8 RGB [H, W, 3], meta)` per sample in shard order (see `ImageShardReader.rgb`)."""
    with ImageShardReader(path) as reader:
        for key in reader.keys:
            yield key, reader.rgb(key), reader.meta(key)


def shard_keys(path: Path) -> list[str]:
    """The keys of an image shard in order (reads and checks the headers only)."""
    return ImageShardReader(path).keys
