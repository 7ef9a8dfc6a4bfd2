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
MAKE_WRITABLE = "make it writable for this user or choose another location"
DISK_FAULTS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", FREE_SPACE),
    errno.EDQUOT: ("disk quota exceeded", FREE_SPACE),
    errno.EROFS: ("read-only file system", MAKE_WRITABLE),
    errno.EACCES: ("permission denied", MAKE_WRITABLE),
    errno.EPERM: ("operation not permitted", MAKE_WRITABLE),
}
"""errno -> (what happened, what to do)."""


RUST_IO_ERROR = re.compile(r"\(os error (\d+)\)")
"""How an I/O error of a Rust library (safetensors) quotes its errno in an error that is no
OSError."""


def _errno(error: BaseException) -> int | None:
    if isinstance(error, OSError):
        return error.errno
    rust = RUST_IO_ERROR.search(str(error))
    return int(rust[1]) if rust else None


def disk_fault(error: BaseException | None) -> OSError | None:
    """The first error with one of `DISK_FAULTS`' errnos in `error`'s chain (the error itself,
    then what it was raised from or while handling), as an OSError; or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        number = _errno(error)
        if number in DISK_FAULTS:
            if isinstance(error, OSError):
                return error
            return OSError(number, os.strerror(number), getattr(error, "filename", None))
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
