"""The CPU rules: a `--workers` left unset is min(4, usable CPUs) wherever it is used, and a
training rank's thread count comes from OMP_NUM_THREADS or the CPUs shared among the node's
ranks."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from labelgen.settings import RunSettings
from labelgen.shard_job import LabelSettings
from pipeline.toolkit import cpus
from pipeline.toolkit.cpus import auto_workers, rank_threads, usable_cpus
from pipeline.toolkit.launch import Launch


@pytest.fixture
def cpus_available(monkeypatch):
    """Pretend this process may run on `n` CPUs."""

    def set_cpus(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return set_cpus


def test_unset_workers_are_min_4_usable_cpus_in_every_stage(
    cpus_available, photo_folder, monkeypatch, tmp_path
):
    """Labelgen's views and `pipeline prepare`'s decoding (observed on the process count prepare
    asks for; it decodes in-process here); evaluation: the next test."""
    from pipeline.dataset import prepare as prepare_module

    fake_teacher = SimpleNamespace(
        full_view_size=None, output_kind="disparity", interpolation="bilinear"
    )
    asked: list[int] = []
    real = prepare_module.decoding

    def recording(items, params, workers):
        asked.append(workers)
        return real(items, params, 1)

    monkeypatch.setattr(prepare_module, "decoding", recording)
    for n, expected in ((1, 1), (2, 2), (64, cpus.WORKERS_CAP)):
        cpus_available(n)
        assert usable_cpus() == n and auto_workers(None) == expected
        prepare_module.prepare([str(photo_folder)], tmp_path / f"ds-{n}", progress=False)
        assert asked.pop() == expected
        how = LabelSettings.of(fake_teacher, torch.device("cpu"), RunSettings(), Launch().workers)
        assert how.workers == expected
    assert auto_workers(0) == 0 and auto_workers(7) == 7  # a count given is kept
    assert Launch().workers is None


def test_evaluation_loaders_take_min_4_usable_cpus_when_workers_are_unset(
    cpus_available, monkeypatch, tmp_path
):
    """`evaluation run` with --workers unset: predict's and score's loaders get min(4, usable
    CPUs) processes (observed on the loaders it builds; they run in-process here)."""
    from typer.testing import CliRunner

    from evaluation.cli import app
    from labelgen.teachers import write_tiny_checkpoint
    from pipeline.world.files import WorldSettings, render_world

    world = tmp_path / "world"
    render_world(world, 2, WorldSettings(seed=0, split="test", height=28, width=42), 1, False)
    model = write_tiny_checkpoint("depth-anything-v2", tmp_path / "model")
    asked: list[int] = []
    real = torch.utils.data.DataLoader

    def recording(*args, num_workers=0, **kwargs):
        asked.append(num_workers)
        return real(*args, num_workers=0, **kwargs)

    monkeypatch.setattr(torch.utils.data, "DataLoader", recording)
    for n, expected in ((2, 2), (64, cpus.WORKERS_CAP)):
        cpus_available(n)
        asked.clear()
        out = tmp_path / f"eval-{n}"
        args = ["run", "--model", str(model), "--dataset", f"world={world}", "--out", str(out)]
        result = CliRunner().invoke(app, [*args, "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert asked == [expected, expected]  # predict, then score


def test_a_rank_takes_omp_num_threads_or_its_share_of_the_cpus(cpus_available):
    cpus_available(16)
    assert rank_threads({}) == 16
    assert rank_threads({"LOCAL_WORLD_SIZE": "4"}) == 4
    assert rank_threads({"LOCAL_WORLD_SIZE": "32"}) == 1
    assert rank_threads({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "4"}) == 3
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='x' is not an integer"):
        rank_threads({"OMP_NUM_THREADS": "x"})
