"""`student.data.schedule`: the pure functions behind shard order, splits and teacher draws."""

from __future__ import annotations

import numpy as np
import pytest

from student.data import schedule as sch


def test_teacher_schedule_respects_weights_and_is_pure() -> None:
    probs = sch.normalized_weights(["a", "b", "c"], {"a": 3, "b": 1})
    assert probs == [0.75, 0.25, 0.0]
    draws = [sch.teacher_for_step(probs, 7, 2, step) for step in range(4000)]
    counts = np.bincount(draws, minlength=3) / len(draws)
    assert abs(counts[0] - 0.75) < 0.03 and abs(counts[1] - 0.25) < 0.03 and counts[2] == 0
    assert draws == [sch.teacher_for_step(probs, 7, 2, step) for step in range(4000)]
    other_epoch = [sch.teacher_for_step(probs, 7, 3, step) for step in range(4000)]
    assert draws != other_epoch


def test_one_teacher_per_optimizer_iteration_and_whole_iterations_per_epoch() -> None:
    p = [0.5, 0.5]
    draws = [sch.teacher_for_step(p, 3, 1, step, accumulate=3) for step in range(60)]
    iterations = [draws[i : i + 3] for i in range(0, 60, 3)]
    assert all(len(set(it)) == 1 for it in iterations)
    assert {it[0] for it in iterations} == {0, 1}
    assert [it[0] for it in iterations] == [sch.teacher_for_step(p, 3, 1, i) for i in range(20)]
    assert sch.steps_for(usable=23, world=2, batch_size=2) == 5
    assert sch.steps_for(usable=23, world=2, batch_size=2, accumulate=2) == 4
    with pytest.raises(ValueError, match="accumulate"):
        sch.steps_for(usable=23, world=2, batch_size=2, accumulate=0)


def test_teacher_weights_are_normalized_and_bad_ones_refused() -> None:
    assert sch.normalized_weights(["a", "b"], None) == [0.5, 0.5]
    assert sch.normalized_weights(["a", "b"], [1, 3]) == [0.25, 0.75]
    for bad in ([1], [0, 0], [-1, 2], {"z": 1}, [float("nan"), 1]):
        with pytest.raises(ValueError):
            sch.normalized_weights(["a", "b"], bad)


def test_pick_never_returns_zero_weight() -> None:
    assert sch.pick([0.5, 0.5, 0.0], 0.9999999999) == 1
    assert sch.pick([0.0, 1.0], 0.0) == 1


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranges_partition_the_epoch(world: int, workers: int) -> None:
    counts = [7, 2, 9, 1, 5]
    batch = 2
    steps = sch.steps_for(sum(counts), world, batch)
    assert steps == sum(counts) // (world * batch)
    order = sch.shard_order(len(counts), 0, 1)
    seen: list[tuple[int, int]] = []
    for rank in range(world):
        total = 0
        for worker in range(workers):
            start, stop = sch.worker_range(steps, batch, rank, workers, worker)
            assert stop - start == batch * sch.worker_quota(steps, workers, worker)
            for p in sch.pieces_for(order, counts, start, stop):
                assert 0 <= p.start < p.stop <= counts[p.shard]
                seen += [(p.shard, i) for i in range(p.start, p.stop)]
                total += p.stop - p.start
        assert total == steps * batch  # every rank: the same number of samples
    assert len(seen) == len(set(seen)) == world * steps * batch  # disjoint


def test_worker_steps_interleave_like_the_dataloader() -> None:
    steps, workers = 7, 3
    made = sorted(
        sch.step_of(j, workers, w)
        for w in range(workers)
        for j in range(sch.worker_quota(steps, workers, w))
    )
    assert made == list(range(steps))
    for skip in range(steps + 1):
        skipped = sum(sch.batches_to_skip(skip, workers, w) for w in range(workers))
        assert skipped == skip


def test_shard_order_and_shuffle_buffer() -> None:
    assert sorted(sch.shard_order(10, 0, 0)) == list(range(10))
    assert sch.shard_order(10, 0, 0) == sch.shard_order(10, 0, 0)
    assert sch.shard_order(10, 0, 0) != sch.shard_order(10, 0, 1)
    items = list(range(50))
    out = list(sch.shuffled(items, 8, np.random.default_rng(0)))
    assert sorted(out) == items and out != items
    assert list(sch.shuffled(items, 0, np.random.default_rng(0))) == items
    assert list(sch.shuffled([], 8, np.random.default_rng(0))) == []
