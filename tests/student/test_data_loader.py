"""`student.data.loader`: the stream under a multi-process DataLoader, resume, benchmark."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from data_helpers import (
    all_keys,
    two_column_dataset,
)

from student.bench.loader import bench_decode, bench_loader
from student.config import DataSettings
from student.data.loader import make_loader
from student.data.stream import DistillStream

S = 56


pytestmark = pytest.mark.usefixtures("no_launcher_env")


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return two_column_dataset(tmp_path_factory.mktemp("loader"))


def stream(ds: Path, **kw) -> DistillStream:
    return DistillStream(ds, ["a", "b"], DataSettings(size=S), rank=0, world=1, **kw)


def test_two_workers_give_every_sample_once_in_step_order(ds: Path) -> None:
    loader = make_loader(stream(ds, batch_size=1), workers=2)
    assert len(loader) == 5
    batches = list(loader)
    assert [b["step"] for b in batches] == list(range(5))
    assert sorted(k for b in batches for k in b["key"]) == sorted(all_keys(ds))
    # the same epoch again (no persistent workers): the same stream
    again = list(loader)
    assert [b["key"] for b in again] == [b["key"] for b in batches]
    for a, b in zip(again, batches, strict=True):
        assert torch.equal(a["image_aug"], b["image_aug"])


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 on 2 cores
@pytest.mark.parametrize(("workers", "done"), [(2, 1), (2, 2), (2, 3), (3, 1), (3, 2)])
def test_loader_resume_reproduces_the_tail(ds: Path, workers: int, done: int) -> None:
    """Any resume position, including one that is not a multiple of the worker count."""
    s = stream(ds, batch_size=1, seed=4)
    s.set_epoch(2)
    loader = make_loader(s, workers=workers)
    full = list(loader)
    it = iter(loader)
    head = [next(it) for _ in range(done)]  # workers have prefetched more than this
    state = s.state_dict()
    del it
    assert state["epoch"] == 2 and state["batches"] == done
    assert [b["key"] for b in head] == [b["key"] for b in full[:done]]
    resumed = stream(ds, batch_size=1, seed=4)
    resumed.load_state_dict(state)
    it = iter(make_loader(resumed, workers=workers))
    first = next(it)  # a checkpoint after one more batch, resumed again
    assert resumed.state_dict()["batches"] == done + 1
    again = stream(ds, batch_size=1, seed=4)
    again.load_state_dict(resumed.state_dict())
    del it
    tail = [first, *make_loader(again, workers=workers)]
    assert [b["key"] for b in tail] == [b["key"] for b in full[done:]]
    assert [b["step"] for b in tail] == list(range(done, 5))
    for a, b in zip(tail, full[done:], strict=True):
        assert torch.equal(a["sc"], b["sc"]) and torch.equal(a["image_aug"], b["image_aug"])
    assert again.state_dict()["epoch"] == 3


def test_stream_pickles_before_iteration(ds: Path) -> None:
    """spawn/forkserver workers receive a pickled stream: it must hold no open file."""
    s = stream(ds, batch_size=2)
    clone = pickle.loads(pickle.dumps(s))
    assert [b["key"] for b in clone] == [b["key"] for b in s]


@pytest.mark.slow
def test_forkserver_workers(ds: Path) -> None:
    loader = make_loader(stream(ds, batch_size=2), workers=2, multiprocessing_context="forkserver")
    assert [b["step"] for b in loader] == [0, 1]


def test_the_loader_refuses_another_batch_size_than_its_stream(ds: Path) -> None:
    s = stream(ds, batch_size=2)
    with pytest.raises(ValueError, match="differs from the stream"):
        make_loader(s, batch_size=4)
    loader = make_loader(s, batch_size=2, workers=0)
    assert loader.batch_size is None and not loader.pin_memory


def test_the_loader_benchmark_helpers_measure_positive_rates(ds: Path) -> None:
    assert bench_decode(ds, 5) > 0
    data = DataSettings(size=S)
    assert bench_loader(ds, ["a"], workers=0, batches=1, data=data, batch_size=2) > 0
