"""Shared by every command line: user errors end in one clear line, not a traceback."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from pipeline.toolkit.faults import disk_fault, fault_message, fault_of, worker_error_line

F = TypeVar("F", bound=Callable[..., Any])

# Errors that carry a message meant for the user (a bad file, a bad flag, a refused action).
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (library errors can run to many lines), or its type
    name when the message is empty: what a one-line user error quotes."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def user_message(error: Exception) -> str | None:
    """What `user_errors` prints for `error`, or None for a bug (a traceback): a disk fault
    (`pipeline.toolkit.faults`), else a user error's own message (one raised while handling a
    disk fault explains it better; one a DataLoader worker raised is its first line), else the
    disk fault it was raised from or while handling."""
    fault = fault_of(error)
    if fault is None and isinstance(error, USER_ERRORS):
        return worker_error_line(error) or str(error)
    fault = fault or disk_fault(error)
    return fault_message(fault) if fault is not None else None


def user_errors(fn: F) -> F:
    """Print `error: <message>` and exit 2 on a user error or a fault of the machine's disks
    (`pipeline.toolkit.faults`: full, read-only, not permitted); PIPELINE_DEBUG=1 for tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # a command's own exit status
            raise
        except Exception as e:
            message = user_message(e)
            if message is None or os.environ.get("PIPELINE_DEBUG"):
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None

    wrapper.reports_user_errors = True  # type: ignore[attr-defined]  # checked by the tests
    return wrapper  # type: ignore[return-value]


def parse_options(pairs: list[str], where: str) -> dict[str, str]:
    """`["k=v", ...]` of a `...,key=value` argument as a dict; a pair without '=' or a key given
    twice is a ValueError naming `where` (the whole argument)."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{where}: option {pair!r} is not key=value")
        if key in options:
            raise ValueError(f"{where}: option {key!r} is given twice")
        options[key] = value.strip()
    return options
