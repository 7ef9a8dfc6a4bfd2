"""Rank discovery from launcher variables, static split and expiring lock-file claims."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.toolkit.claims import Claim, LockInfo, claim_or_wait, expires_in, lock_info, try_claim
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


def write_lock(directory: Path, item: str, age: float = 0.0, **body) -> Path:
    """A lock file of another worker, last refreshed `age` seconds ago."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / f"{item}.lock"
    lock.write_text(json.dumps({"owner": "other", "claimed_at": 0, **body}))
    when = time.time() - age
    os.utime(lock, (when, when))
    return lock


def here(pid: int) -> dict:
    """The lock fields of process `pid` on this host."""
    from pipeline.toolkit.claims import _here

    return {**_here(), "pid": pid}


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_a_lock_records_host_and_pid(tmp_path):
    claim = try_claim(tmp_path, "000000", "me", ttl=60)
    body = json.loads((tmp_path / "000000.lock").read_text())
    assert body["host"] == socket.gethostname() and body["pid"] == os.getpid()
    claim.release()


def test_the_lock_of_a_dead_process_of_this_host_is_taken_over_at_once(tmp_path):
    write_lock(tmp_path, "000001", **here(dead_pid()))
    claim = try_claim(tmp_path, "000001", "me", ttl=3600)  # fresh, but its process is gone
    assert claim is not None and claim.still_mine()
    claim.release()


def test_a_killed_child_not_yet_waited_for_counts_as_gone(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    write_lock(tmp_path, "000002", **here(child.pid))
    assert try_claim(tmp_path, "000002", "me", ttl=3600) is None  # alive
    child.kill()
    deadline = time.time() + 10
    while not lock_info(tmp_path / "000002.lock").dead and time.time() < deadline:
        time.sleep(0.05)  # a zombie until waited for
    claim = try_claim(tmp_path, "000002", "me", ttl=3600)
    child.wait()
    assert claim is not None
    claim.release()


def test_a_lock_of_a_live_process_or_another_host_waits_for_its_ttl(tmp_path):
    write_lock(tmp_path, "000003", **here(os.getpid()))  # this process: alive
    assert try_claim(tmp_path, "000003", "me", ttl=3600) is None
    other = {**here(dead_pid()), "host": "elsewhere"}  # its pid means nothing here
    write_lock(tmp_path, "000004", age=100, **other)
    assert try_claim(tmp_path, "000004", "me", ttl=3600) is None
    assert 3400 < expires_in(tmp_path, "000004", 3600) <= 3500
    assert expires_in(tmp_path, "000005", 3600) is None  # no lock
    write_lock(tmp_path, "000005", **{**here(dead_pid()), "pid_ns": "another container"})
    assert try_claim(tmp_path, "000005", "me", ttl=3600) is None


def test_claim_or_wait_waits_for_a_foreign_lock_to_go_stale_or_names_its_live_holder(tmp_path):
    write_lock(tmp_path, "run", age=0.2, host="elsewhere", pid=1)
    claim = claim_or_wait(tmp_path, "run", "me", ttl=0.6, poll=0.05)  # never refreshed: stale
    assert isinstance(claim, Claim)
    claim.release()

    lock = write_lock(tmp_path, "run", host="elsewhere", pid=1)
    stop = threading.Event()

    def refresh():  # a live worker on another host
        while not stop.wait(0.05):
            os.utime(lock)

    beat = threading.Thread(target=refresh)
    beat.start()
    try:
        held = claim_or_wait(tmp_path, "run", "me", ttl=0.6, poll=0.05)
    finally:
        stop.set()
        beat.join()
    assert isinstance(held, LockInfo) and held.host == "elsewhere" and not held.local
    write_lock(tmp_path, "run", **here(os.getpid()))
    started = time.monotonic()
    held = claim_or_wait(tmp_path, "run", "me", ttl=60, poll=0.05)
    assert isinstance(held, LockInfo) and held.local  # a live process here: no waiting
    assert time.monotonic() - started < 5
