"""Messages for people: a library's exception text without Python's object reprs.

PIL says "cannot identify image file <_io.BytesIO object at 0x7f...>" of bytes it cannot read,
and a `Path` formatted with `!r` reads `PosixPath('...')`. `plain(error)` is the text of an
exception (or any message) with such reprs written plainly: the object's repr dropped, a path as
the path itself.
"""

from __future__ import annotations

import re

OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")
PATH_REPR = re.compile(r"\b(?:Posix|Windows|Pure\w*)?Path\((['\"])(.*?)\1\)")


def plain(error: BaseException | str) -> str:
    """`str(error)` without `<... object at 0x...>` and with `PosixPath('p')` written as `p`."""
    return PATH_REPR.sub(r"\2", OBJECT_REPR.sub("", str(error)))
