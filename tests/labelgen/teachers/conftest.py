"""Tiny teacher checkpoints, written once per session and loaded through `load_teacher`."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from teacher_helpers import ADAPTERS, images  # noqa: E402

from labelgen.teachers import Teacher, load_teacher, tiny_spec, write_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Callable[..., Path]:
    """`tiny_dir(adapter, seed=0)`: path of a tiny checkpoint, written on first use."""
    cache: dict[tuple[str, int], Path] = {}

    def get(adapter: str, seed: int = 0) -> Path:
        if (adapter, seed) not in cache:
            out = tmp_path_factory.mktemp(f"tiny-{adapter}-s{seed}") / "ckpt"
            cache[adapter, seed] = write_tiny_checkpoint(adapter, out, seed=seed)
        return cache[adapter, seed]

    return get


@pytest.fixture(scope="session")
def tiny_teacher(tiny_dir) -> Callable[..., Teacher]:
    """`tiny_teacher(adapter, precision="fp32", seed=0)`: a loaded tiny teacher, cached."""
    cache: dict[tuple[str, str, int], Teacher] = {}

    def get(adapter: str, precision: str = "fp32", seed: int = 0) -> Teacher:
        key = (adapter, precision, seed)
        if key not in cache:
            spec = tiny_spec("tiny", adapter, tiny_dir(adapter, seed))
            cache[key] = load_teacher(spec, device="cpu", precision=precision)
        return cache[key]

    return get


@pytest.fixture(params=ADAPTERS)
def adapter(request) -> str:
    return request.param


@pytest.fixture
def make_images() -> Callable[..., torch.Tensor]:
    return images
