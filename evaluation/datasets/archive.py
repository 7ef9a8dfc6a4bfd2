"""Random access to a benchmark's files, whether the user has a directory or an uncompressed tar.

Tars are indexed once (member name -> payload offset and size) and read with `os.pread`;
nothing is extracted to disk. Archives are untrusted input: absolute names, `..` components
and links that point outside the archive are refused; directory entries, `./` prefixes and
other non-file members are tolerated. Compressed tars are refused: random access needs an
uncompressed one.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import threading
from pathlib import Path

from evaluation.datasets.base import DatasetError

COMPRESSION_MAGIC = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"BZh", "bzip2", "bunzip2"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
)
MAX_LINK_HOPS = 8


class Archive:
    """The files of one dataset: sorted relative names (`/`-separated) and their bytes."""

    kind = ""

    def __init__(self, root: str) -> None:
        self.root = root
        self._files: dict[str, tuple[int, int]] = {}  # name -> (offset, size)

    def names(self) -> list[str]:
        return sorted(self._files)

    def __contains__(self, name: object) -> bool:
        return name in self._files

    def size(self, name: str) -> int:
        return self._files[name][1]

    def where(self, name: str) -> str:
        """`name` as a user finds it: a file path, or a tar member with its archive."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError


class DirArchive(Archive):
    """A dataset directory, walked once (symlinked folders followed, loops skipped)."""

    kind = "directory"

    def __init__(self, root: str) -> None:
        super().__init__(root)
        seen: set[str] = set()
        for top, dirs, files in os.walk(root, followlinks=True):
            real = os.path.realpath(top)
            if real in seen:
                dirs[:] = []
                continue
            seen.add(real)
            rel = os.path.relpath(top, root).replace(os.sep, "/")
            for f in files:
                name = f if rel == "." else f"{rel}/{f}"
                path = os.path.join(top, f)
                if os.path.isfile(path):
                    self._files[name] = (0, os.path.getsize(path))

    def where(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def read(self, name: str) -> bytes:
        try:
            with open(self.where(name), "rb") as f:
                return f.read()
        except OSError as e:
            raise DatasetError(f"{self.where(name)}: cannot read ({e})") from e


def safe_name(archive: str, name: str) -> str:
    """A member name without `./` parts; absolute names and `..` components raise."""
    norm = posixpath.normpath(name) if name else "."
    if name.startswith("/") or "\\" in name or norm == ".." or norm.startswith("../"):
        raise DatasetError(
            f"{archive}: unsafe member name {name!r}; the archive is corrupt or hostile"
        )
    return "" if norm == "." else norm


class TarArchive(Archive):
    """An uncompressed tar, indexed by member offsets; picklable (the file reopens lazily)."""

    kind = "tar"

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()
        self._index()

    def _index(self) -> None:
        file_size = os.path.getsize(self.root)
        links: dict[str, str] = {}
        try:
            with tarfile.open(self.root, mode="r:") as tf:
                for info in tf:
                    name = safe_name(self.root, info.name)
                    if not name or info.isdir():
                        continue
                    if info.isreg():
                        if info.offset_data + info.size > file_size:
                            raise DatasetError(f"{self.where(name)} is truncated")
                        self._files[name] = (info.offset_data, info.size)
                    elif info.issym() or info.islnk():
                        links[name] = self._link_target(name, info)
        except tarfile.TarError as e:
            raise DatasetError(f"{self.root}: not a readable tar ({e})") from e
        self._resolve_links(links)

    def _link_target(self, name: str, info: tarfile.TarInfo) -> str:
        base = posixpath.dirname(name) if info.issym() else ""
        target = posixpath.normpath(posixpath.join(base, info.linkname))
        if info.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise DatasetError(
                f"{self.where(name)}: link to {info.linkname!r} points outside the archive"
            )
        return target

    def _resolve_links(self, links: dict[str, str]) -> None:
        for name, target in links.items():
            for _ in range(MAX_LINK_HOPS):
                if target not in links:
                    break
                target = links[target]
            if target in self._files:  # dangling links are left out
                self._files[name] = self._files[target]

    def where(self, name: str) -> str:
        return f"{self.root} (member {name})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_fd=None, _pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            try:
                self._fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError as e:
                raise DatasetError(f"{self.root}: cannot open ({e})") from e
            self._pid = os.getpid()
        return self._fd

    def read(self, name: str) -> bytes:
        offset, size = self._files[name]
        fd = self._descriptor()
        if hasattr(os, "pread"):
            data = os.pread(fd, size, offset)
        else:  # pragma: no cover - Windows
            with self._lock:
                os.lseek(fd, offset, os.SEEK_SET)
                data = os.read(fd, size)
        if len(data) != size:
            raise DatasetError(f"{self.where(name)} is truncated")
        return data

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


def open_archive(path: str | os.PathLike, expected: str) -> Archive:
    """The directory or uncompressed tar at `path`; problems raise `DatasetError` saying what
    `expected` (the layout) the loader wanted there."""
    p = Path(path)
    if p.is_dir():
        archive: Archive = DirArchive(str(path))
    elif p.is_file():
        with open(p, "rb") as f:
            head = f.read(8)
        for magic, kind, tool in COMPRESSION_MAGIC:
            if head.startswith(magic):
                raise DatasetError(
                    f"{path}: {kind}-compressed; random access needs an uncompressed tar: "
                    f"decompress it first (`{tool} {path}`) and point at the .tar"
                )
        if not tarfile.is_tarfile(p):
            raise DatasetError(f"{path}: not a tar file or directory; expected {expected}")
        archive = TarArchive(str(path))
    else:
        raise DatasetError(f"{path}: no such file or directory; expected {expected}")
    if not archive.names():
        raise DatasetError(f"{path}: contains no files; expected {expected}")
    return archive
