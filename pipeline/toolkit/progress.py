"""The progress of long jobs (prepare, verify, world render and labels, labelgen run, student
train, evaluation predict, score and crop analysis): a bar on a terminal, a line at a fixed
interval in a log.

On a terminal (the stream, stderr by default, is a TTY) `progress_bar(...)` is a tqdm bar. Anywhere
else (a log file, a pipe, a SLURM or cluster job) a bar would be one line thousands of characters
long, so it writes one plain line every `interval` seconds (`LINE_INTERVAL_S`), with `every` also
whenever the count passes a multiple of `every`, and a last line when it closes:

    train: 400/20000 steps (2%), 3.10 steps/s, elapsed 2m09s, left 1h45m | loss 0.412 sc 0.2

The text after `|` is the job's status (`set_status`, e.g. the running loss). `enabled=False`
(`--no-progress`) shows nothing at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LINE_INTERVAL_S = 30.0
"""Seconds between two progress lines when the output is not a terminal."""


def is_terminal(stream: IO[str] | Any) -> bool:
    """Whether `stream` is an open TTY (a closed or odd stream counts as no terminal)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def duration(seconds: float) -> str:
    """`42s`, `2m09s`, `1h45m`."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """A bar or progress lines (see the module docstring); use `progress_bar(...)` to make one."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        initial: int = 0,
        enabled: bool = True,
        every: int | None = None,
        interval: float | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._first = self._line_n = initial
        self.status = ""
        self.every = every
        self.interval = LINE_INTERVAL_S if interval is None else interval
        self.stream = sys.stderr if stream is None else stream
        self.started = self._line_t = time.monotonic()
        self.lines = enabled and not is_terminal(self.stream)
        self.bar = None
        if enabled and not self.lines:
            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                dynamic_ncols=True,
                file=self.stream,
            )
        self.closed = False

    @property
    def elapsed(self) -> float:
        """Seconds since the progress started."""
        return time.monotonic() - self.started

    def update(self, n: int = 1) -> None:
        """Count `n` more units done."""
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines and self._line_due():
            self._write_line()

    def set_status(self, text: str) -> None:
        """What the job reports besides the count (shown after the bar, or after `|`)."""
        self.status = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def iterate(self, items: Iterable[T]) -> Iterator[T]:
        """Yield `items`, counting one unit each; the progress closes when they run out."""
        for item in items:
            yield item
            self.update()
        self.close()

    def line(self) -> str:
        """The progress line of the moment."""
        elapsed = self.elapsed
        rate = (self.n - self._first) / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100 * self.n // self.total}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:.3g} {self.unit}/s, elapsed {duration(elapsed)}"
        if self.total and rate > 0 and self.n < self.total:
            text += f", left {duration((self.total - self.n) / rate)}"
        return text + (f" | {self.status}" if self.status else "")

    def _line_due(self) -> bool:
        if self.every and self.n // self.every > self._line_n // self.every:
            return True
        return time.monotonic() - self._line_t >= self.interval

    def _write_line(self) -> None:
        self._line_n, self._line_t = self.n, time.monotonic()
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar, or write the last line (if anything was counted since the last one)."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.lines and self.n != self._line_n:
            self._write_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(
    total: int | None,
    desc: str,
    unit: str = "it",
    *,
    initial: int = 0,
    enabled: bool = True,
    every: int | None = None,
    interval: float | None = None,
    stream: IO[str] | None = None,
) -> Progress:
    """The progress of a job of `total` units (None: unknown) named `desc`, starting at
    `initial`: a bar on a terminal, else a line every `interval` seconds (default
    `LINE_INTERVAL_S`) and, with `every`, each time the count passes a multiple of it; nothing
    with `enabled=False`. Use as a context manager, or `close()` it."""
    return Progress(
        total,
        desc,
        unit,
        initial=initial,
        enabled=enabled,
        every=every,
        interval=interval,
        stream=stream,
    )
