"""Worker processes never outlive the process that started them.

A `kill -9` of `pipeline prepare`, `pipeline world render`, `evaluation run`, `labelgen run` or
`student train` leaves its pool or DataLoader workers with no one to report to; without this they
may keep running (and holding memory) forever. Every pool and DataLoader of every stage passes
`exit_with_parent()` as its `initializer` / `worker_init_fn` (or calls `guard()` inside its own
`worker_init_fn`), created in the thread that starts the workers.

In the worker, on Linux: `prctl(PR_SET_PDEATHSIG, SIGKILL)`, then a check that the parent still
lives (it may have died before the call; the worker then exits at once). The kernel sends the
signal when the *thread* that forked the worker exits, not the process; a pool started from a
thread other than the main thread (which may end while the pool lives on) therefore gets the
watchdog below instead, as do other systems: a daemon thread that polls the parent's pid every
`POLL_SECONDS` and ends the worker when the parent is gone.

The parent is the process that built the guard; with a `forkserver` context the direct parent is
the fork server (which ends with its owner), so the worker watches both. A parent that is PID 1
(a container's entry point) is a parent like any other.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 1.0
"""How often the watchdog (non-Linux, or a pool started from a non-main thread) polls."""
EXIT_STATUS = 1


@dataclass(frozen=True)
class ExitWithParent:
    """A picklable `initializer` / `worker_init_fn` (any arguments are ignored) that makes the
    worker exit when process `parent` dies. `kernel`: whether PR_SET_PDEATHSIG is safe (the
    workers are started from the parent's main thread)."""

    parent: int
    kernel: bool = True

    def __call__(self, *_: object) -> None:
        guard(self.parent, self.kernel)


def exit_with_parent() -> ExitWithParent:
    """The guard for workers started from this process and the current thread: call it where
    the pool or the DataLoader iterator is created, pass the result as `initializer` or
    `worker_init_fn`."""
    main = threading.current_thread() is threading.main_thread()
    return ExitWithParent(os.getpid(), kernel=main)


def guard(parent: int, kernel: bool = True) -> str:
    """In a worker: end this process when `parent` (or the direct parent) dies. Returns how:
    "prctl" (Linux, the kernel signals us) or "watchdog" (a polling thread)."""
    direct = os.getppid()
    if kernel and _set_pdeathsig(signal.SIGKILL):
        if not _alive(parent, direct):  # died before prctl took effect
            os._exit(EXIT_STATUS)
        if direct == parent:
            return "prctl"
    if not _alive(parent, direct):
        os._exit(EXIT_STATUS)
    watch = threading.Thread(
        target=_watch, args=(parent, direct), name="exit-with-parent", daemon=True
    )
    watch.start()
    return "watchdog"


def _set_pdeathsig(sig: int) -> bool:
    """PR_SET_PDEATHSIG through libc; False where there is none (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _alive(parent: int, direct: int) -> bool:
    """Whether this process still has the parent it was started with and `parent` lives."""
    if os.getppid() != direct:
        return False  # re-parented to init or a subreaper: the parent is gone
    if parent == direct or os.name != "posix":
        return True
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(parent: int, direct: int) -> None:
    while _alive(parent, direct):
        time.sleep(POLL_SECONDS)
    os._exit(EXIT_STATUS)
