"""Content hashes used in manifests and `dataset.json`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def update_from_file(h: Any, path: Path | str) -> None:
    """Feed a file's bytes to hash object `h`, in 1 MiB chunks."""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    update_from_file(h, path)
    return h.hexdigest()
