"""Session fixtures of the `labelgen run` tests: tiny checkpoints, a small prepared dataset and
one reference labelling of it, each built once and copied where a test writes."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from lgrun_helpers import (  # noqa: E402
    BASE_SIZES,
    TEACHER,
    copy_dataset,
    label,
    make_dataset,
    spec_str,
)

from labelgen.teachers import write_tiny_checkpoint  # noqa: E402


@pytest.fixture(autouse=True)
def _no_split_env(no_launcher_env):
    """A launcher's RANK/WORLD_SIZE/SLURM variables must not leak into these tests."""


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Callable[[int], Path]:
    """`tiny_ckpt(seed)`: a tiny depth-anything-v2 checkpoint directory, written once."""
    cache: dict[int, Path] = {}

    def get(seed: int = 0) -> Path:
        if seed not in cache:
            out = tmp_path_factory.mktemp(f"dav-s{seed}") / "ckpt"
            cache[seed] = write_tiny_checkpoint(TEACHER, out, seed=seed)
        return cache[seed]

    return get


@pytest.fixture(scope="session")
def ckpt(tiny_ckpt) -> Path:
    return tiny_ckpt(0)


@pytest.fixture(scope="session")
def base_dataset(tmp_path_factory) -> Path:
    """Three photos, one per shard, one region each (never written to: copy it)."""
    root = tmp_path_factory.mktemp("base")
    return make_dataset(root, {f"img{i}": s for i, s in enumerate(BASE_SIZES)}, shard_size=1)


@pytest.fixture
def dataset(base_dataset, tmp_path) -> Path:
    """A private copy of the base dataset, no labels."""
    return copy_dataset(base_dataset, tmp_path / "ds")


@pytest.fixture(scope="session")
def reference(base_dataset, ckpt, tmp_path_factory) -> Path:
    """The base dataset labelled once by teacher `dav` (wds), uninterrupted, one worker."""
    ds = copy_dataset(base_dataset, tmp_path_factory.mktemp("reference") / "ds")
    (report,) = label(ds, [spec_str("dav", ckpt)])
    assert len(report.shards_done) == 3 and not report.shards_failed
    return ds
