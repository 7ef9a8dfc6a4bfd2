"""Walking an input folder: its files, symlinks followed once, and what the walk passed over.

- Hidden entries (names starting with '.') are skipped, and counted.
- A symlink to a file is a file. A symlinked folder is followed, after every real folder of the
  walk, unless the folder it leads to was listed already (through its real path or another link):
  each folder is listed once, so a link cycle ends, and a key never depends on a link that was
  added next to the real folder.
- A symlink that leads nowhere (its target is missing, or links lead back to themselves) and a
  folder that cannot be listed are found with an `error` saying so, to be rejected like a bad
  image instead of ignored or fatal.
- Fifos, sockets and devices are skipped (reading one could block forever), and counted.

File names are bytes on POSIX: one that is not valid UTF-8 comes out of `os` with surrogate
escapes, which no JSON, log or terminal can hold. `display_name` is the form people (and keys)
get: those bytes written as `\\xNN`.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def display_name(name: str) -> str:
    """`name` with the bytes of an undecodable file name escaped (`caf\\udce9` → `caf\\\\xe9`)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


@dataclass
class Skipped:
    """What listing the inputs passed over on purpose, counted (`dataset.json` key 'skipped')."""

    extension: Counter[str] = field(default_factory=Counter)
    """Files that are not images by their name, per lower-case suffix ('' for none)."""
    hidden: int = 0
    """Hidden files and folders (a hidden folder counts once)."""
    linked_folders: int = 0
    """Symlinked folders that lead to a folder listed already."""
    special: int = 0
    """Fifos, sockets and devices."""

    def add_extension(self, name: str) -> None:
        self.extension[display_name(os.path.splitext(name)[1].lower())] += 1

    @property
    def total(self) -> int:
        return self.extension.total() + self.hidden + self.linked_folders + self.special

    def to_json(self) -> dict[str, Any]:
        return {
            "extension": dict(sorted(self.extension.items())),
            "hidden": self.hidden,
            "linked_folders": self.linked_folders,
            "special": self.special,
        }

    def describe(self) -> str:
        """E.g. '3 non-image files (.txt: 2, no extension: 1), 1 hidden entry'; '' if none."""
        parts = []
        if self.extension:
            n = self.extension.total()
            kinds = ", ".join(
                f"{ext or 'no extension'}: {c}" for ext, c in sorted(self.extension.items())
            )
            parts.append(f"{n} non-image file{'s' if n != 1 else ''} ({kinds})")
        for count, one, many in (
            (self.hidden, "hidden entry", "hidden entries"),
            (self.linked_folders, "linked folder listed already", "linked folders listed already"),
            (self.special, "fifo, socket or device", "fifos, sockets or devices"),
        ):
            if count:
                parts.append(f"{count} {one if count == 1 else many}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Found:
    """A file under the walked folder; `error` (a broken link...) means it cannot be read."""

    rel: str
    """The posix path relative to the walked folder, as on disk."""
    path: str
    error: str = ""


def broken_link_reason(path: str, error: OSError) -> str:
    """Why the symlink at `path` cannot be followed, and what to do."""
    try:
        target = repr(display_name(os.readlink(path)))
    except OSError:
        target = "its target"
    if error.errno == errno.ENOENT:
        return f"a broken symlink: its target {target} does not exist; fix or remove the link"
    if error.errno == errno.ELOOP:
        return (
            f"a symlink loop: its target {target} leads back to the link (itself or through "
            "other links); fix or remove the link"
        )
    return f"a symlink that cannot be followed ({error.strerror}); fix or remove the link"


def unfollowable(path: str) -> str:
    """Why the symlink at `path` cannot be followed ('' if it can)."""
    try:
        os.stat(path)
    except OSError as e:
        return broken_link_reason(path, e)
    return ""


def _folder_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def walk_files(root: str, skipped: Skipped) -> Iterator[Found]:
    """The files under folder `root`, each folder once (see the module docstring); not sorted
    across folders, sorted by name within one."""
    seen: set[tuple[int, int]] = set()
    try:
        ident = _folder_id(os.stat(root))
    except OSError as e:
        yield Found("", root, broken_link_reason(root, e))
        return
    folders: deque[tuple[str, str, tuple[int, int]]] = deque([("", root, ident)])
    while folders:  # the root first, then symlinked folders in the order they were found
        rel, path, ident = folders.popleft()
        if ident in seen:
            skipped.linked_folders += 1
            continue
        seen.add(ident)
        yield from _scan(rel, path, seen, folders, skipped)


def _scan(
    rel: str, path: str, seen: set, links: deque[tuple[str, str, tuple[int, int]]], skipped: Skipped
) -> Iterator[Found]:
    """The files of one folder and its real sub-folders; symlinked folders are queued on `links`."""
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        reason = f"a folder that cannot be listed ({e.strerror}); make it readable or move it aside"
        yield Found(rel, path, reason)
        return
    for entry in entries:
        if entry.name.startswith("."):
            skipped.hidden += 1
            continue
        sub = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_symlink():
            try:
                st = entry.stat()
            except OSError as e:
                yield Found(sub, entry.path, broken_link_reason(entry.path, e))
                continue
            if stat.S_ISDIR(st.st_mode):
                links.append((sub, entry.path, _folder_id(st)))
            elif stat.S_ISREG(st.st_mode):
                yield Found(sub, entry.path)
            else:
                skipped.special += 1
        elif entry.is_dir(follow_symlinks=False):
            ident = _folder_id(entry.stat(follow_symlinks=False))
            if ident in seen:  # inside a folder reached through a link before
                skipped.linked_folders += 1
            else:
                seen.add(ident)
                yield from _scan(sub, entry.path, seen, links, skipped)
        elif entry.is_file(follow_symlinks=False):  # no stat call: millions of files are cheap
            yield Found(sub, entry.path)
        else:
            skipped.special += 1
