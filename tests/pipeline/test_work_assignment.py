"""Rank discovery from launcher variables, static split and expiring lock-file claims."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pipeline.toolkit.claims import try_claim
from pipeline.toolkit.distributed import my_share, worker_info


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (0, 1, "single")),
        (
            {"RANK": "1", "WORLD_SIZE": "4", "SLURM_PROCID": "3", "SLURM_NTASKS": "8"},
            (1, 4, "torchrun"),
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "7",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_ARRAY_TASK_MIN": "5",
            },
            (2, 4, "slurm-array"),
        ),
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "3"}, (2, 3, "slurm")),
    ],
)
def test_worker_info_from_launchers(env, expected):
    info = worker_info(env)
    assert (info.rank, info.world_size, info.source) == expected


def test_worker_info_rejects_bad_values():
    with pytest.raises(ValueError, match="RANK='x'"):
        worker_info({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="rank must be in"):
        worker_info({"RANK": "2", "WORLD_SIZE": "2"})


def test_static_split_covers_everything_once():
    items = list(range(11))
    shares = [my_share(items, worker_info({"RANK": str(r), "WORLD_SIZE": "3"})) for r in range(3)]
    assert sorted(sum(shares, [])) == items
    assert shares[1] == [1, 4, 7, 10]


def test_claim_is_exclusive_and_released(tmp_path):
    first = try_claim(tmp_path, "000000", "a", ttl=60)
    assert first is not None
    assert try_claim(tmp_path, "000000", "b", ttl=60) is None
    first.release()
    assert not (tmp_path / "000000.lock").exists()
    second = try_claim(tmp_path, "000000", "b", ttl=60)
    assert second is not None and second.still_mine()
    second.release()


def test_stale_claim_of_a_dead_worker_is_taken_over(tmp_path):
    lock = tmp_path / "000003.lock"
    lock.write_text(json.dumps({"owner": "dead-node:123", "claimed_at": 0}))
    old = time.time() - 120
    os.utime(lock, (old, old))
    assert try_claim(tmp_path, "000003", "live", ttl=300) is None  # not yet expired
    claim = try_claim(tmp_path, "000003", "live", ttl=60)
    assert claim is not None
    assert json.loads(lock.read_text())["owner"] == "live"
    claim.release()


def test_heartbeat_keeps_a_live_claim_fresh(tmp_path):
    claim = try_claim(tmp_path, "000001", "a", ttl=0.4)
    assert claim is not None
    time.sleep(0.6)  # longer than ttl, but the heartbeat refreshed the file
    assert try_claim(tmp_path, "000001", "b", ttl=0.4) is None
    claim.release()


def test_local_rank_from_torchrun_or_srun():
    from pipeline.toolkit.distributed import local_rank

    assert local_rank({}) == 0
    assert local_rank({"LOCAL_RANK": "3", "SLURM_LOCALID": "1"}) == 3  # torchrun inside srun
    assert local_rank({"SLURM_LOCALID": "2"}, devices=4) == 2  # srun: one task per GPU
    assert local_rank({"SLURM_LOCALID": "2"}, devices=1) == 0  # each task sees only its GPU
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        local_rank({"LOCAL_RANK": "x"})


def test_release_keeps_a_lock_taken_over_after_the_owner_check(tmp_path, monkeypatch):
    """A takeover right after the release reads who owns the lock must survive the release."""
    claim = try_claim(tmp_path, "000004", "slow", ttl=60)
    assert claim is not None
    lock = tmp_path / "000004.lock"
    taker = json.dumps({"owner": "fast", "claimed_at": time.time()})
    read = Path.read_text

    def read_then_taken_over(self, *args, **kwargs):
        text = read(self, *args, **kwargs)
        monkeypatch.setattr(Path, "read_text", read)  # once
        lock.write_text(taker)  # another worker takes the item over right after the read
        return text

    monkeypatch.setattr(Path, "read_text", read_then_taken_over)
    claim.release()
    assert json.loads(lock.read_text())["owner"] == "fast"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000004.lock"]  # no leftovers


def test_release_of_a_lock_already_taken_over_leaves_it(tmp_path):
    claim = try_claim(tmp_path, "000005", "slow", ttl=60)
    assert claim is not None
    lock = tmp_path / "000005.lock"
    lock.write_text(json.dumps({"owner": "fast", "claimed_at": time.time()}))
    claim.release()
    assert json.loads(lock.read_text())["owner"] == "fast"
    claim.release()  # a second release is harmless
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000005.lock"]


def test_device_names_resolve_to_this_ranks_gpu(monkeypatch):
    import torch

    from pipeline.toolkit.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device("auto") == torch.device("cuda", 2)
    assert resolve_device("cuda") == torch.device("cuda", 2)  # set_device needs an index
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
