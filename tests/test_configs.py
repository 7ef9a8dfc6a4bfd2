"""Every config file in configs/ loads and validates as `student train` settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from student.config import TrainSettings

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"paper.yaml", "baseline.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    settings = load_config(TrainSettings, path)
    assert settings.steps >= 1
    if path.name == "baseline.yaml":
        assert settings.data.mode == "baseline" and settings.loss.norm_sc == "global"
        assert not settings.loss.local_global
