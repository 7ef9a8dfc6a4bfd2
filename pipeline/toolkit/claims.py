"""Dynamic work claiming with lock files that expire, for nodes of different speed.

A worker claims an item by creating `<dir>/<item>.lock` exclusively. While it works, a heartbeat
refreshes the file's modification time; a lock not refreshed within `ttl` seconds belongs to a
dead worker and may be taken over. Two workers that race on a stale lock may both do the item:
work items are deterministic and published atomically, so the result is the same bytes, only
the time is wasted.

Releasing moves the lock aside under a unique name first (one atomic rename), then reads who
owned it: a lock that another worker took over meanwhile is linked back (create-if-absent), so a
slow worker never deletes the lock of the worker that took its item over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from pipeline.toolkit.atomic import temporary_sibling


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Claim:
    """A held lock file; `release()` removes it. Use as a context manager."""

    def __init__(self, path: Path, owner: str, ttl: float) -> None:
        self.path, self.owner, self.ttl = path, owner, ttl
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                if self.still_mine():
                    os.utime(self.path)
            except OSError:  # the lock vanished between the check and the touch; keep beating
                continue

    def still_mine(self) -> bool:
        return _owner(self.path) == self.owner

    def release(self) -> None:
        self._stop.set()
        self._beat.join()
        aside = temporary_sibling(self.path)
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # already gone (released or removed by hand)
            return
        try:
            if _owner(aside) != self.owner:  # taken over: give it back unless a new lock exists
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
        finally:
            aside.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner(path: Path) -> str | None:
    """The owner written in lock file `path`, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text()).get("owner")
    except (OSError, ValueError, AttributeError):
        return None


def _lock_body(owner: str) -> bytes:
    return json.dumps({"owner": owner, "claimed_at": time.time()}).encode()


def try_claim(directory: Path, item: str, owner: str, ttl: float = 600.0) -> Claim | None:
    """Claim `item` unless a live worker holds it; returns None when it is taken."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{item}.lock"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:  # released meanwhile: try once more
            return try_claim(directory, item, owner, ttl)
        if age < ttl:
            return None
        tmp = temporary_sibling(path)  # stale: take it over atomically
        tmp.write_bytes(_lock_body(owner))
        os.replace(tmp, path)
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(_lock_body(owner))
    claim = Claim(path, owner, ttl)
    if not claim.still_mine():  # another worker took it over in the same instant
        claim.release()
        return None
    return claim
