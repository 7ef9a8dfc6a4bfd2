"""`OrderedBatcher` with a fake pure-torch predict: order, failure isolation, OOM, pending bound."""

from __future__ import annotations

import weakref

import pytest
import torch

from labelgen.batching import OrderedBatcher, is_out_of_memory

BAD = 99  # channel-2 value that makes the fake predict raise


def view(key_no: int, view_no: int, h: int = 8, w: int = 8, bad: bool = False) -> torch.Tensor:
    """uint8 [3,h,w]: channel 0 names the image, channel 1 the view, channel 2 marks bad views."""
    v = torch.zeros(3, h, w, dtype=torch.uint8)
    v[0], v[1], v[2] = key_no, view_no, BAD if bad else 0
    return v


class FakeTeacher:
    """`[B,3,h,w]` uint8 -> `[B,1,h,w]` float: 1000 * image + view, so a map names its view."""

    def __init__(self, fail_bad: bool = True, oom_above: int | None = None) -> None:
        self.fail_bad, self.oom_above = fail_bad, oom_above
        self.calls: list[tuple[int, tuple[int, int]]] = []  # (batch size, view shape) that ran

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        assert batch.dtype == torch.uint8 and batch.ndim == 4
        if self.oom_above is not None and len(batch) > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        if self.fail_bad and bool((batch[:, 2] == BAD).any()):
            raise RuntimeError("teacher exploded")
        self.calls.append((len(batch), tuple(batch.shape[-2:])))
        b = batch.float()
        return (1000 * b[:, :1] + b[:, 1:2]).contiguous()


def images(n: int, bad: set[int] = frozenset(), planned: int = 3) -> list[tuple[str, dict]]:
    """n images; full views of a few different shapes, `planned` (varying) 8x8 views each."""
    out = []
    for i in range(n):
        fh, fw = [(5, 7), (6, 6), (5, 7), (4, 9)][i % 4]
        views = {"full": view(i, 0, fh, fw, bad=i in bad)}
        for j in range(planned + i % 2):
            views[f"r0.t{j}"] = view(i, j + 1, bad=i in bad)
        out.append((f"k{i}", views))
    return out


def feed(batcher: OrderedBatcher, items, errors: dict[str, str] | None = None) -> list:
    done = []
    for key, views in items:
        error = (errors or {}).get(key)
        done += batcher.add(key, None if error else views, error)
    return done + batcher.flush()


def check_maps(done, items) -> None:
    """Every map equals the fake prediction of exactly its own view (no mix-ups)."""
    by_key = dict(items)
    for d in done:
        if d.error is not None:
            continue
        assert set(d.maps) == set(by_key[d.key])
        for name, arr in d.maps.items():
            v = by_key[d.key][name]
            assert arr.shape == tuple(v.shape[-2:])
            assert (arr == 1000 * int(v[0, 0, 0]) + int(v[1, 0, 0])).all(), (d.key, name)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 16])
def test_order_and_content_preserved_across_mixed_view_sizes(batch_size):
    items = images(9)
    teacher = FakeTeacher()
    batcher = OrderedBatcher(teacher, batch_size)
    done = feed(batcher, items)
    assert [d.key for d in done] == [k for k, _ in items]
    assert all(d.error is None for d in done)
    check_maps(done, items)
    n_views = sum(len(v) for _, v in items)
    assert batcher.views_done == n_views == sum(n for n, _ in teacher.calls)
    assert max(n for n, _ in teacher.calls) <= batch_size
    assert batcher.oom_retries == 0


def test_equal_shapes_share_batches_across_images():
    items = images(8, planned=3)
    teacher = FakeTeacher()
    feed(OrderedBatcher(teacher, 4), items)
    tiles = [n for n, shape in teacher.calls if shape == (8, 8)]
    n_tiles = sum(len(v) - 1 for _, v in items)
    assert sum(tiles) == n_tiles
    assert len(tiles) == -(-n_tiles // 4)  # full batches, one partial at the end


def test_failing_image_is_isolated_and_order_kept():
    items = images(6, bad={3})
    batcher = OrderedBatcher(FakeTeacher(), 4)
    done = feed(batcher, items)
    assert [d.key for d in done] == [k for k, _ in items]
    failed = [d for d in done if d.error is not None]
    assert [d.key for d in failed] == ["k3"]
    assert failed[0].maps == {}
    assert "inference failed on view" in failed[0].error and "teacher exploded" in failed[0].error
    check_maps(done, items)


def test_view_building_error_passes_through_in_order():
    items = images(4)
    done = feed(OrderedBatcher(FakeTeacher(), 3), items, errors={"k1": "view building failed: X"})
    assert [d.key for d in done] == ["k0", "k1", "k2", "k3"]
    assert done[1].error == "view building failed: X" and done[1].maps == {}
    check_maps(done, items)


def test_first_image_failing_while_its_other_views_are_queued():
    # k0's 8x8 views fill a batch and fail; its full view (unique shape) is still queued.
    items = [
        ("k0", {"full": view(0, 0, 5, 7, bad=True), "r0.t0": view(0, 1, bad=True)}),
        ("k1", {"full": view(1, 0, 6, 6), "r0.t0": view(1, 1)}),
    ]
    batcher = OrderedBatcher(FakeTeacher(), 2)
    done = feed(batcher, items)
    assert [d.key for d in done] == ["k0", "k1"]
    assert done[0].error is not None and done[1].error is None
    check_maps(done, items)


def test_out_of_memory_is_retried_in_halves():
    items = images(7, planned=5)
    teacher = FakeTeacher(oom_above=2)
    batcher = OrderedBatcher(teacher, 8)
    done = feed(batcher, items)
    assert [d.key for d in done] == [k for k, _ in items]
    assert all(d.error is None for d in done)
    check_maps(done, items)
    assert batcher.oom_retries > 0
    assert max(n for n, _ in teacher.calls) <= 2
    assert batcher.views_done == sum(len(v) for _, v in items)


def test_out_of_memory_retry_runs_after_the_failed_forward_is_freed():
    """The failed forward's tensors (held by its traceback's frames) are gone before the smaller
    retries start; otherwise they would still occupy the device memory the retry needs."""
    alive = []

    def predict(batch):
        if alive:
            assert alive[-1]() is None, "the failed batch's activations are still referenced"
        if len(batch) > 2:
            activations = batch.float() * 2  # what a real forward holds when memory runs out
            alive.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB (fake)")
        return batch[:, :1].float()

    items = images(4, planned=3)
    batcher = OrderedBatcher(predict, 8)
    done = feed(batcher, items)
    assert alive and batcher.oom_retries > 0
    assert all(d.error is None for d in done)


def test_out_of_memory_message_counts_and_single_view_oom_fails_only_that_image():
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))

    def predict(batch):
        if bool((batch[:, 2] == BAD).any()):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        return batch[:, :1].float()

    items = images(4, bad={2})
    done = feed(OrderedBatcher(predict, 4), items)
    assert [d.key for d in done] == ["k0", "k1", "k2", "k3"]
    assert [d.error is None for d in done] == [True, True, False, True]
    assert "out of memory" in done[2].error


def test_max_pending_bounds_images_in_flight():
    # Every image has one view of a shape of its own: no batch ever fills by itself.
    items = [(f"k{i}", {"full": view(i, 0, 4, 5 + i)}) for i in range(25)]
    teacher = FakeTeacher()
    batcher = OrderedBatcher(teacher, 4, max_pending=5)
    returned: list = []
    for n, (key, views) in enumerate(items, start=1):
        returned += batcher.add(key, views)
        assert n - len(returned) <= 5
    returned += batcher.flush()
    assert [d.key for d in returned] == [k for k, _ in items]
    check_maps(returned, items)


def test_default_max_pending_is_four_batches():
    items = [(f"k{i}", {"full": view(i, 0, 4, 5 + i)}) for i in range(30)]
    batcher = OrderedBatcher(FakeTeacher(), 2)
    returned: list = []
    for n, (key, views) in enumerate(items, start=1):
        returned += batcher.add(key, views)
        assert n - len(returned) <= 8
    assert [d.key for d in returned + batcher.flush()] == [k for k, _ in items]


def test_the_batcher_refuses_a_zero_batch_and_a_key_added_twice():
    with pytest.raises(ValueError, match="batch-size"):
        OrderedBatcher(FakeTeacher(), 0)
    batcher = OrderedBatcher(FakeTeacher(), 4)
    batcher.add("a", {"full": view(0, 0)})
    with pytest.raises(ValueError, match="added twice"):
        batcher.add("a", {"full": view(0, 0)})
