"""Tar shards as untrusted input: validated member names, bounded sizes, nothing extracted to disk.

Writers produce byte-identical tars for identical content (fixed mtime, owner and mode), so
re-running a job gives the same files and checksums.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MAX_MEMBER_BYTES = 1 << 30  # 1 GiB: no single image or label map comes close


class ShardError(ValueError):
    """A shard that cannot be trusted: the message names the shard and what is wrong."""


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # byte offset of the payload inside the tar
    size: int

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def ext(self) -> str:
        parts = self.name.split(".", 1)
        return parts[1] if len(parts) == 2 else ""


def check_member_name(shard: Path, name: str) -> None:
    p = PurePosixPath(name)
    if not name or name.startswith("/") or p.is_absolute() or ".." in p.parts or "\\" in name:
        raise ShardError(f"{shard}: unsafe member name {name!r}; the shard is corrupt or hostile")


def scan(path: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> list[Member]:
    """List the members of a tar shard without reading payloads, validating each header."""
    path = Path(path)
    file_size = path.stat().st_size
    members: list[Member] = []
    try:
        with tarfile.open(path, mode="r:") as tf:
            for info in tf:
                check_member_name(path, info.name)
                if not info.isreg():
                    raise ShardError(f"{path}: member {info.name!r} is not a regular file")
                if info.size > max_member_bytes:
                    raise ShardError(f"{path}: member {info.name!r} is oversized ({info.size} B)")
                if info.offset_data + info.size > file_size:
                    raise ShardError(f"{path}: member {info.name!r} is truncated")
                members.append(Member(info.name, info.offset_data, info.size))
    except tarfile.TarError as e:
        raise ShardError(f"{path}: not a readable tar ({e}); re-create this shard") from e
    return members


def read_member(f: BinaryIO, member: Member, shard: Path) -> bytes:
    f.seek(member.offset)
    data = f.read(member.size)
    if len(data) != member.size:
        raise ShardError(f"{shard}: member {member.name!r} is truncated")
    return data


def iterate(path: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> Iterator[tuple[str, bytes]]:
    """Yield `(member name, payload)` in tar order, after validating every header."""
    members = scan(path, max_member_bytes)
    with open(path, "rb") as f:
        for m in members:
            yield m.name, read_member(f, m, path)


def group_by_key(members: list[Member], shard: Path) -> dict[str, dict[str, Member]]:
    """`{key: {ext: member}}` in first-seen key order; a key split across the tar is an error."""
    out: dict[str, dict[str, Member]] = {}
    last = None
    for m in members:
        if m.key != last and m.key in out:
            raise ShardError(f"{shard}: members of key {m.key!r} are not contiguous")
        last = m.key
        exts = out.setdefault(m.key, {})
        if m.ext in exts:
            raise ShardError(f"{shard}: member {m.name!r} appears twice")
        exts[m.ext] = m
    return out


class HashingFile:
    """A write-only file wrapper that hashes and counts what passes through (what tarfile needs):
    a tar shard's sha256 and size are known the moment it is written, without reading it back."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.pos = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.pos += len(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self.pos


class TarWriter:
    """Writes regular-file members with deterministic headers; reports each payload offset."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._tf = tarfile.open(fileobj=fileobj, mode="w:", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def add(self, name: str, data: bytes) -> Member:
        check_member_name(Path("<writer>"), name)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uname = info.gname = ""
        header = len(info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape"))
        offset = self._tf.offset + header
        self._tf.addfile(info, io.BytesIO(data))
        return Member(name, offset, info.size)

    def close(self) -> None:
        self._tf.close()
