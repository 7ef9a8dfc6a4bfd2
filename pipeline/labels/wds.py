"""`wds` label backend: one WebDataset-compatible tar per shard, plus an offset index.

Tar members, in this order (USTAR headers, mtime 0, mode 0644: identical content gives
byte-identical tars):

    __shard__/meta.json                 shard metadata: format, codec, plan_sha256, keys, extra
    {key}.{map}.{ext}                   one per map, e.g. "sa_1.full.pcf16", "sa_1.r0.t3.pcf16"
    {key}.json                          the key's record (record.py), after its maps

`webdataset` skips `__shard__/...` members (its meta-member convention) and groups the rest by
key: a sample is `{"__key__": key, "json": record, "full.pcf16": payload, ...}`. A map payload
is a 16-byte header (`DLBL`, version u16, reserved u16, H u32, W u32; little-endian) followed by
the codec's bytes, so it decodes alone (`decode_payload`); `ext` names the codec.

Random access: `NNNNNN.tar.idx.json` (`{"format", "tar_bytes", "tar_sha256", "members":
[[name, payload offset, size], ...]}`) is published before the tar. The reader uses it when its
`tar_bytes` equals the tar's size, otherwise scans the tar headers
(`pipeline.toolkit.tario.scan`). Every read fetches the member's 512-byte header with its
payload in one `pread` and checks name, type and size, so a stale or hostile index cannot make
the reader return the wrong bytes.
"""

from __future__ import annotations

import json
import os
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.labels.codecs import Codec
from pipeline.labels.reader import ShardReader
from pipeline.labels.writer import ShardWriter
from pipeline.toolkit.atomic import read_json, write_json
from pipeline.toolkit.tario import (
    MAX_MEMBER_BYTES,
    HashingFile,
    Member,
    ShardError,
    TarWriter,
    check_member_name,
    scan,
)

META_MEMBER = "__shard__/meta.json"
INDEX_FORMAT = "depth-labels-tar-index"
PAYLOAD_MAGIC = b"DLBL"
PAYLOAD_HEADER = struct.Struct("<4sHHII")
PAYLOAD_VERSION = 1
BLOCK = tarfile.BLOCKSIZE
MAX_NAME = 100  # USTAR name field; longer names would need pax headers


def index_path(tar_path: Path) -> Path:
    return Path(tar_path).with_name(Path(tar_path).name + ".idx.json")


def encode_payload(codec: Codec, arr: np.ndarray) -> bytes:
    """Header + codec bytes for one (H, W) map."""
    h, w = arr.shape
    return PAYLOAD_HEADER.pack(PAYLOAD_MAGIC, PAYLOAD_VERSION, 0, h, w) + codec.encode(arr)


def decode_payload(codec: Codec, data: bytes, where: str) -> np.ndarray:
    """Inverse of `encode_payload`: float32 (H, W); raises `ShardError` naming `where`."""
    if len(data) < PAYLOAD_HEADER.size:
        raise ShardError(f"{where}: map payload is truncated")
    magic, version, _, h, w = PAYLOAD_HEADER.unpack_from(data)
    if magic != PAYLOAD_MAGIC or version != PAYLOAD_VERSION:
        raise ShardError(f"{where}: not a label map payload (magic {magic!r}, version {version})")
    try:
        return codec.decode(data[PAYLOAD_HEADER.size :], (h, w))
    except ValueError as e:
        raise ShardError(f"{where}: {e}; re-create this shard") from e


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class WdsShardWriter(ShardWriter):
    name = "wds"
    suffix = ".tar"

    def _begin(self, tmp: Path) -> None:
        self._file = open(tmp, "wb")  # noqa: SIM115 (closed in _finish / _discard)
        self._hashing = HashingFile(self._file)
        self._tar = TarWriter(self._hashing)
        self._members: list[Member] = []
        self._add(META_MEMBER, _dumps(self.meta))

    def _add(self, name: str, data: bytes) -> None:
        # Offsets come from the byte count: TarWriter.add's reported offset is not reliable
        # (tarfile.addfile leaves TarInfo.offset_data at 0). One USTAR header block per member.
        header_at = self._hashing.pos
        self._tar.add(name, data)
        padded = -(-len(data) // BLOCK) * BLOCK
        if self._hashing.pos != header_at + BLOCK + padded:
            raise RuntimeError(f"{self.path}: member {name!r} did not get a single header block")
        self._members.append(Member(name, header_at + BLOCK, len(data)))

    def _check_maps(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        for name in arrays:
            member = f"{key}.{name}.{self.codec.ext}"
            if len(member.encode()) > MAX_NAME:
                raise ValueError(f"{self.path}: member name {member!r} is over {MAX_NAME} bytes")

    def _encode_map(self, arr: np.ndarray) -> bytes:
        return encode_payload(self.codec, arr)

    def _put_map(self, key: str, name: str, payload: bytes) -> None:
        self._add(f"{key}.{name}.{self.codec.ext}", payload)

    def _put_record(self, key: str, record: dict) -> None:
        self._add(f"{key}.json", _dumps(record))

    def _finish(self) -> str:
        self._tar.close()
        self._file.close()
        sha = self._hashing.sha256.hexdigest()
        index = {
            "format": INDEX_FORMAT,
            "tar_bytes": self._hashing.pos,
            "tar_sha256": sha,
            "members": [[m.name, m.offset, m.size] for m in self._members],
        }
        write_json(index_path(self.path), index)  # before the tar becomes visible
        return sha

    def _discard(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()


class WdsShardReader(ShardReader):
    name = "wds"
    suffix = ".tar"

    def __init__(
        self,
        path: Path,
        *,
        expected_plan_sha256: str | None = None,
        max_member_bytes: int = MAX_MEMBER_BYTES,
        use_index: bool = True,
    ) -> None:
        self.max_member_bytes = max_member_bytes
        self.use_index = use_index
        self._fd: int | None = None
        super().__init__(path, expected_plan_sha256=expected_plan_sha256)

    # -- member table --------------------------------------------------------------------------
    def _load_meta(self) -> dict:
        self._fd = os.open(self.path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size
        members = self._members_from_index() if self.use_index else None
        self.used_index = members is not None
        if members is None:
            members = scan(self.path, self.max_member_bytes)
        if not members or members[0].name != META_MEMBER:
            raise ShardError(f"{self.path}: first member is not {META_MEMBER}; not a label shard")
        self._members = {m.name: m for m in members}
        if len(self._members) != len(members):
            raise ShardError(f"{self.path}: a member name appears twice; the shard is corrupt")
        meta = self._json(META_MEMBER)
        self._check_layout(members, meta)
        return meta

    def _members_from_index(self) -> list[Member] | None:
        """The index's member table, or None when it is missing or does not fit this tar."""
        try:
            index = read_json(index_path(self.path))
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
            return None
        if index.get("tar_bytes") != self._size:
            return None
        members = []
        for entry in index.get("members", []):
            if not (isinstance(entry, list) and len(entry) == 3):
                raise ShardError(f"{self.path}: malformed index entry {entry!r}")
            name, offset, size = entry
            if not (isinstance(name, str) and isinstance(offset, int) and isinstance(size, int)):
                raise ShardError(f"{self.path}: malformed index entry {entry!r}")
            check_member_name(self.path, name)
            if size > self.max_member_bytes:
                raise ShardError(f"{self.path}: member {name!r} is oversized ({size} B)")
            if size < 0 or offset < BLOCK or offset + size > self._size:
                raise ShardError(f"{self.path}: index entry {name!r} is out of bounds")
            members.append(Member(name, offset, size))
        return members

    def _check_layout(self, members: list[Member], meta: Any) -> None:
        """Every member belongs to a key of the metadata, keys contiguous and in order."""
        if not isinstance(meta, dict) or not isinstance(meta.get("keys"), list):
            return  # the base class reports bad metadata
        order: list[str] = []
        for m in members[1:]:
            if not order or order[-1] != m.key:
                order.append(m.key)
        if order != meta["keys"]:
            raise ShardError(
                f"{self.path}: member keys do not match the metadata's key list "
                "(missing, extra or reordered keys); re-create this shard"
            )
        missing = [k for k in order if f"{k}.json" not in self._members]
        if missing:
            raise ShardError(f"{self.path}: no record member for key {missing[0]!r}")

    # -- member access -------------------------------------------------------------------------
    def _payload(self, name: str) -> bytes:
        member = self._members.get(name)
        if member is None:
            raise ShardError(f"{self.path}: member {name!r} is missing; re-create this shard")
        if self._fd is None:
            raise ValueError(f"{self.path}: reader is closed")
        data = os.pread(self._fd, BLOCK + member.size, member.offset - BLOCK)
        if len(data) != BLOCK + member.size:
            raise ShardError(f"{self.path}: member {name!r} is truncated")
        self._check_header(data[:BLOCK], member)
        return data[BLOCK:]

    def _check_header(self, block: bytes, member: Member) -> None:
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.TarError as e:
            raise ShardError(f"{self.path}: bad tar header for {member.name!r} ({e})") from e
        if info.name != member.name or info.size != member.size or not info.isreg():
            raise ShardError(
                f"{self.path}: tar header does not match member {member.name!r} "
                "(stale index or corrupt tar); delete the .idx.json or re-create the shard"
            )

    def _json(self, name: str) -> Any:
        try:
            return json.loads(self._payload(name))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ShardError(f"{self.path}: member {name!r} is not valid JSON ({e})") from e

    def _load_record(self, key: str) -> dict:
        record = self._json(f"{key}.json")
        if not isinstance(record, dict) or not isinstance(record.get("maps"), dict):
            raise ShardError(f"{self.path}: record of key {key!r} is malformed")
        return record

    def _read_map(self, key: str, name: str, shape: tuple[int, int]) -> np.ndarray:
        member = f"{key}.{name}.{self._codec.ext}"
        return decode_payload(self._codec, self._payload(member), f"{self.path}: {member}")

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
