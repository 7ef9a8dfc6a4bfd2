"""Shared fixtures for the label-store tests (helpers live in `label_helpers.py`)."""

from __future__ import annotations

import pytest
from label_helpers import BACKEND_NAMES, key_maps


@pytest.fixture(params=BACKEND_NAMES)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def content() -> dict:
    """Four keys with realistic maps, one of them a failed key (error, no maps)."""
    return {
        "img_000": key_maps(0),
        "img_001": key_maps(1),
        "img_002": "teacher produced no output: CUDA error",
        "img_003": key_maps(2, regions=1),
    }
