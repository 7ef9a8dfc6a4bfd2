"""Atomic publishing: a reader sees either nothing or the complete file, never a partial one.

What is published gets the mode a plain `open` or `mkdir` would give it, `0o666 & ~umask` for
files and `0o777 & ~umask` for directories (so others on a shared cluster read what the umask
lets them), whatever the writing library chose (`tempfile` and safetensors write 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.toolkit.faults import name_the_file


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and directory under `path` (for directory-shaped shards)."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


def current_umask() -> int:
    """The process's umask, read from /proc where it can be (setting it to read it back would
    briefly change it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path, mode: int | None = None) -> None:
    """chmod `path`, a file or a directory and everything under it, to `mode` (files; their
    directories also get x where r is set), by default what the umask gives new files."""
    mask = current_umask()
    file_mode = (0o666 & ~mask) if mode is None else mode
    dir_mode = (0o777 & ~mask) if mode is None else mode | (mode & 0o444) >> 2
    path = Path(path)
    if not path.is_dir():
        os.chmod(path, file_mode)
        return
    for root, dirs, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(root, name), file_mode)
        for name in dirs:
            os.chmod(os.path.join(root, name), dir_mode)
    os.chmod(path, dir_mode)


def temporary_sibling(path: Path) -> Path:
    """A unique hidden name next to `path`; temporary names start with '.' and end in '.tmp'."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


@contextlib.contextmanager
def publishing(path: Path, mode: int | None = None, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to fill (`tmp`, default: a `temporary_sibling`); on success set
    its mode (`follow_umask`: by default what the umask gives), fsync it and rename it onto
    `path`.

    Works for files and directories. On error the temporary is removed and `path` is untouched.
    A directory that already exists is first renamed aside (a hidden temporary name) and deleted
    after the new one is in place, so `path` is missing only between two renames, never while a
    large old tree is being deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path) if tmp is None else Path(tmp)
    old = None
    try:
        yield tmp
        if tmp.is_dir():
            fsync_tree(tmp)
            if path.exists():
                old = temporary_sibling(path)
                os.replace(path, old)
        else:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        follow_umask(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        name_the_file(e, path)  # a full disk while writing: say which file
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)  # put the previous tree back
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname()) or "host"


def owned_temporary(path: Path) -> Path:
    """A new empty temporary directory next to `path` whose name says which process of which
    host fills it (`.NAME.pPID-HOST-XXXX.tmp`), so that `remove_stale_temporaries` leaves it
    alone while that process runs."""
    prefix = f".{path.name}.p{os.getpid()}-{_host()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries left next to `path` by writers that were killed (any but those
    an `owned_temporary` names as a running process of this host); returns what was removed."""
    path = Path(path)
    own = re.compile(rf"^\.{re.escape(path.name)}\.([^.]+)\.tmp$")
    removed = []
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        token = own.match(tmp.name)
        if token is None:
            continue  # another name's temporary (`NAME.v2`)
        owner = re.match(r"^p(\d+)-([A-Za-z0-9_]+)-", token.group(1))
        if owner and owner.group(2) == _host() and _alive(int(owner.group(1))):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def glob_escape(name: str) -> str:
    """`name` with the characters glob treats specially escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextlib.contextmanager
def publishing_dir(path: Path, mode: int | None = None) -> Iterator[Path]:
    """`publishing` for a directory: first remove what killed writers left next to `path`
    (`remove_stale_temporaries`), then yield an empty `owned_temporary` directory to fill; on
    success it replaces `path` (an existing directory is swapped out in two renames)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    with publishing(path, mode, tmp=owned_temporary(path)) as tmp:
        yield tmp


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    with publishing(Path(path), mode) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, obj: Any) -> None:
    """Atomically replace `path` with the JSON of `obj` (sorted keys, stable bytes)."""
    write_bytes(Path(path), (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); restore it or re-create it") from e
