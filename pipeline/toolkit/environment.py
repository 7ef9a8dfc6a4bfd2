"""What every output directory records about the software that wrote it."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import pipeline


def git_sha() -> str | None:
    """The checkout's commit, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    """Code version, git sha, Python, torch, transformers, numpy, CUDA and host."""
    import numpy
    import torch
    import transformers

    return {
        "code_version": pipeline.__version__,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "host": platform.node(),
    }
