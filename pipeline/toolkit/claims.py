"""Dynamic work claiming with lock files that expire, for nodes of different speed.

A worker claims an item by creating `<dir>/<item>.lock` exclusively. While it works, a heartbeat
refreshes the file's modification time; a lock not refreshed within `ttl` seconds belongs to a
dead worker and may be taken over. A lock records its owner's host and process id: one whose
process is gone on this host (same host name and PID namespace) is taken over at once, without
waiting for `ttl`. Two workers that race on a stale lock may both do the item: work items are
deterministic and published atomically, so the result is the same bytes, only the time is wasted.

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
from dataclasses import dataclass
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


def _pid_namespace() -> str | None:
    """This process's PID namespace (Linux), so that containers sharing a host name are told
    apart; None where it cannot be read."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return None


def _here() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_ns": _pid_namespace()}


def _lock_body(owner: str) -> bytes:
    return json.dumps({"owner": owner, "claimed_at": time.time(), **_here()}).encode()


def process_is_gone(pid: int) -> bool:
    """True when no process `pid` runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, another user's
        return False
    try:  # a killed child its parent has not waited for yet
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock, as its file says, and how long ago it was last refreshed."""

    owner: str | None
    host: str | None
    pid: int | None
    age: float
    """Seconds since the lock was created or refreshed."""
    local: bool
    """The owner ran on this host (same host name and PID namespace)."""

    @property
    def dead(self) -> bool:
        """The owner is known to be gone: a process of this host that no longer runs."""
        return self.local and self.pid is not None and self.pid > 0 and process_is_gone(self.pid)

    def describe(self) -> str:
        where = f"{self.host} pid {self.pid}" if self.host else (self.owner or "unknown owner")
        return f"{where}, refreshed {self.age:.0f} s ago"


def lock_info(path: Path) -> LockInfo | None:
    """The `LockInfo` of lock file `path`, or None when there is no lock."""
    try:
        age = time.time() - path.stat().st_mtime
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        body = {}
    body = body if isinstance(body, dict) else {}
    here = _here()
    local = body.get("host") == here["host"] and body.get("pid_ns") == here["pid_ns"]
    pid = body.get("pid") if isinstance(body.get("pid"), int) else None
    return LockInfo(body.get("owner"), body.get("host"), pid, age, local)


def expires_in(directory: Path, item: str, ttl: float) -> float | None:
    """Seconds until the lock on `item` expires if its owner stops refreshing it now (None: no
    lock)."""
    info = lock_info(directory / f"{item}.lock")
    return None if info is None else max(0.0, ttl - info.age)


def try_claim(directory: Path, item: str, owner: str, ttl: float = 600.0) -> Claim | None:
    """Claim `item` unless a live worker holds it; returns None when it is taken. A lock not
    refreshed for `ttl` seconds, or whose owner is a process of this host that is gone, is
    taken over."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{item}.lock"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        info = lock_info(path)
        if info is None:  # released meanwhile: try once more
            return try_claim(directory, item, owner, ttl)
        if info.age < ttl and not info.dead:
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


def claim_or_wait(
    directory: Path, item: str, owner: str, ttl: float, poll: float = 1.0
) -> Claim | LockInfo:
    """Claim `item`; a lock held by another host is waited for until it is released or goes
    stale (at most `ttl` after it was last refreshed). Returns the claim, or the `LockInfo` of a
    holder that is alive: a live process of this host, or one that kept refreshing its lock."""
    deadline = time.monotonic() + ttl + poll
    while True:
        claim = try_claim(directory, item, owner, ttl)
        if claim is not None:
            return claim
        info = lock_info(directory / f"{item}.lock")
        if info is not None and (info.local or time.monotonic() > deadline):
            return info
        time.sleep(poll)
