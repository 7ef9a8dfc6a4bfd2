"""Faults of the machine, not of the input: a full disk, a read-only file system, a file the user
may not touch. Every command reports them in one line that names the file and the fix
(`pipeline.toolkit.cliutil.user_errors`), however deep they were raised: in a writer thread, a
worker process, or under another error that was raised while handling them.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

FREE_SPACE = "free space on its file system or choose another location"
MAKE_WRITABLE = "make it writable (remount it read-write) or choose another location"
GIVE_ACCESS = "give this user access to it (chmod, chown) or choose another location"
DISK_FAULTS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", FREE_SPACE),
    errno.EDQUOT: ("disk quota exceeded", FREE_SPACE),
    errno.EROFS: ("read-only file system", MAKE_WRITABLE),
    errno.EACCES: ("permission denied", GIVE_ACCESS),
    errno.EPERM: ("operation not permitted", GIVE_ACCESS),
}
"""errno -> (what happened, what to do)."""


RUST_IO_ERROR = re.compile(r"\(os error (\d+)\)")
"""How an I/O error of a Rust library (safetensors) quotes its errno in an error that is no
OSError."""
WORKER_ERROR = re.compile(r"Caught (\w+) in [^\n]*\nOriginal Traceback")
"""How torch's DataLoader re-raises a worker's error: the type, with the worker's traceback as
the message (an OSError loses its errno and file name on the way)."""
ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ([^:]+)(?:: '(.*)')?")


def worker_error_line(error: BaseException) -> str | None:
    """The first line of the message of the error a DataLoader worker raised, from the text it
    was re-raised with in the main process; None for an error that did not come that way."""
    caught = WORKER_ERROR.match(str(error))
    if caught is None:
        return None
    own = re.compile(rf"^(?:\w+\.)*{caught[1]}: (.*)$")
    lines = [m[1] for m in map(own.match, str(error).splitlines()) if m]
    return lines[-1] if lines else None


def _errno(error: BaseException) -> int | None:
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno
    said = str(error)
    rust = RUST_IO_ERROR.search(said)
    if rust:
        return int(rust[1])
    return next((n for n in DISK_FULL if os.strerror(n) in said), None)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`'s chain holds a full disk or an exceeded quota (`disk_fault`), an errno
    or only its words ("No space left on device") in a library's own error."""
    fault = disk_fault(error)
    return fault is not None and fault.errno in DISK_FULL


def fault_of(error: BaseException) -> OSError | None:
    """`error` as an OSError when it is one of `DISK_FAULTS`: itself, or one made from a Rust
    I/O error or a DataLoader worker's OSError; else None."""
    worker = ERRNO_TEXT.match(worker_error_line(error) or "")
    if worker is not None and int(worker[1]) in DISK_FAULTS:
        return OSError(int(worker[1]), worker[2], worker[3])
    number = _errno(error)
    if number not in DISK_FAULTS:
        return None
    if isinstance(error, OSError):
        return error
    return OSError(number, os.strerror(number), getattr(error, "filename", None))


def disk_fault(error: BaseException | None) -> OSError | None:
    """The first of `DISK_FAULTS` in `error`'s chain (the error itself, then what it was raised
    from or while handling), as an OSError (`fault_of`); or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        fault = fault_of(error)
        if fault is not None:
            return fault
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


def name_the_file(error: BaseException, path: Path | str) -> None:
    """Give a disk fault raised without a file name (a write to an open file, e.g. by `tarfile`,
    or safetensors' I/O error) the name of the file being written, so that the one-line report
    can name it. A short write with no errno (numpy's `tofile`: "N requested and M written") on
    a file system with less room left than it missed is the full disk it is, ENOSPC."""
    if _short_write_on_a_full_disk(error, Path(path)):
        error.errno, error.strerror = errno.ENOSPC, os.strerror(errno.ENOSPC)  # type: ignore
    if _errno(error) in DISK_FAULTS and getattr(error, "filename", None) is None:
        error.filename = str(path)  # type: ignore[attr-defined]


def _short_write_on_a_full_disk(error: BaseException, path: Path) -> bool:
    if not isinstance(error, OSError) or error.errno is not None:
        return False
    short = re.fullmatch(r"(\d+) requested and (\d+) written", str(error))
    if short is None:
        return False
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < int(short[1]) - int(short[2])


def published_name(path: str) -> str:
    """`path` with each temporary name of `pipeline.toolkit.atomic` (`.NAME.XXXX.tmp`) replaced by
    the NAME it was to be published as: the name the user gave, not one that is already gone."""
    parts = Path(path).parts
    names = [p[1:-4].rsplit(".", 1)[0] if _temporary(p) else p for p in parts]
    return str(Path(*names)) if names else path


def _temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp") and "." in name[1:-4]


def fault_message(error: OSError) -> str:
    """One line: the file, what happened, what to do."""
    what, fix = DISK_FAULTS[error.errno]  # type: ignore[index]
    if error.filename is None or isinstance(error.filename, int):
        where = "a file (PIPELINE_DEBUG=1 shows which)"
    else:
        where = published_name(os.fsdecode(error.filename))
    return f"{where}: {what}; {fix}"
