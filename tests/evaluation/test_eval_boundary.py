"""Scale-invariant boundary F1: hand-computed cases, invariances, the mask, and the published
definition written out literally (loops over directions and thresholds) as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.boundary import boundary_counts, edge_maps, si_boundary_f1


def published(pred_depth: np.ndarray, gt_depth: np.ndarray, t_min=1.05, t_max=1.25, n=10):
    """The definition as published (Depth Pro), one threshold and one direction at a time."""

    def relations(d, t):
        return (
            (d[:, :-1] / d[:, 1:]) > t,
            (d[:-1, :] / d[1:, :]) > t,
            (d[:, 1:] / d[:, :-1]) > t,
            (d[1:, :] / d[:-1, :]) > t,
        )

    def f1(p, g, t):
        ep, eg = relations(p, t), relations(g, t)
        pairs = list(zip(ep, eg, strict=True))
        r = 0.25 * sum(np.count_nonzero(a & b) / max(np.count_nonzero(b), 1) for a, b in pairs)
        pr = 0.25 * sum(np.count_nonzero(a & b) / max(np.count_nonzero(a), 1) for a, b in pairs)
        return 0.0 if r + pr == 0 else 2 * (r * pr) / (r + pr)

    thresholds = np.linspace(t_min, t_max, n)
    weights = thresholds / thresholds.sum()
    inv_p, inv_g = 1.0 / pred_depth.clip(min=1e-6), 1.0 / gt_depth.clip(min=1e-6)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.array([f1(inv_p, inv_g, t) for t in thresholds])
    return np.sum(scores * weights)


def raised_square(size=32, near=2.0, far=4.0) -> np.ndarray:
    depth = np.full((size, size), far)
    depth[8:20, 10:24] = near
    return depth


@pytest.mark.parametrize("scale", [1.0, 0.37, 250.0])
def test_raised_square_exact_and_scaled_score_one(scale):
    gt = raised_square()
    assert si_boundary_f1(gt * scale, gt) == pytest.approx(1.0)


def test_single_straight_step_scores_a_quarter():
    gt = np.full((16, 16), 4.0)
    gt[:, :8] = 2.0  # one vertical step: only one of the four directions has edges
    assert si_boundary_f1(gt, gt) == pytest.approx(0.25)


def test_blurred_edge_scores_lower():
    gt = raised_square(near=2.0, far=6.0)
    disp = 1.0 / gt
    kernel = np.ones(5) / 5
    blurred = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, disp)
    blurred = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, blurred)
    blurred[blurred <= 0] = disp.min()
    score = si_boundary_f1(1.0 / blurred, gt)
    assert 0.0 < score < 0.9 * si_boundary_f1(gt, gt)


def test_prediction_without_edges_scores_zero():
    assert si_boundary_f1(np.full((32, 32), 3.0), raised_square()) == 0.0


def test_a_shift_in_inverse_depth_changes_the_score():
    gt = raised_square(near=2.0, far=2.6)  # ratio 1.3: an edge at every threshold
    shifted = 1.0 / (1.0 / gt + 0.3)  # ratio now ~1.09: an edge at the low thresholds only
    assert si_boundary_f1(shifted, gt) < 0.7


def test_mask_ignores_pairs_that_touch_an_invalid_pixel():
    gt = raised_square()
    pred = gt.copy()
    pred[24:30, 2:8] = 0.5  # spurious structure
    mask = np.ones_like(gt, dtype=bool)
    mask[24:30, 2:8] = False  # ... where the ground truth is invalid
    assert si_boundary_f1(pred, gt) < 1.0
    assert si_boundary_f1(pred, gt, mask=mask) == pytest.approx(1.0)
    # one invalid pixel next to the square's edge removes exactly its pairs from the counts
    one = np.ones_like(mask)
    one[8, 9] = False  # left neighbour of the square's corner (8, 10)
    full, masked = boundary_counts(gt, gt), boundary_counts(gt, gt, mask=one)
    # direction 0: pixel i nearer than its left neighbour j, the pair ((8, 10), (8, 9))
    assert masked[0, 1, 0] == full[0, 1, 0] - 1 and masked[0, 0, 0] == full[0, 0, 0] - 1
    assert (masked[1:] == full[1:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_the_published_definition(dtype):
    rng = np.random.default_rng(0)
    gt = np.exp(rng.normal(1.0, 0.6, (48, 64))).astype(dtype)
    gt[rng.random(gt.shape) < 0.05] = np.inf  # sky: inverse depth 0
    gt[rng.random(gt.shape) < 0.02] = 0.0  # clipped to 1e-6
    pred = (gt * np.exp(rng.normal(0, 0.08, gt.shape))).astype(dtype)
    for t_min, t_max, n in [(1.05, 1.25, 10), (1.1, 1.1, 1), (1.02, 2.0, 7)]:
        ours = si_boundary_f1(pred, gt, t_min=t_min, t_max=t_max, n=n)
        assert ours == published(pred, gt, t_min, t_max, n)


def test_bad_shapes_and_thresholds_are_refused():
    with pytest.raises(ValueError, match="2-D maps of one shape"):
        si_boundary_f1(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="t_min"):
        si_boundary_f1(np.ones((4, 4)), np.ones((4, 4)), t_min=0.9)


def test_edge_maps_mark_the_near_side():
    edges = edge_maps(raised_square())
    assert edges[8, 10] and edges[19, 23] and not edges[0, 0] and not edges[12, 15]


def test_edge_maps_draw_only_edges_between_valid_pixels():
    """A pair counts only where both pixels are valid, as in the metric; any map width."""
    depth = raised_square(size=33)
    mask = np.ones(depth.shape, dtype=bool)
    mask[:, 9] = False  # the far side of the square's left edge
    edges = edge_maps(depth, mask)
    assert edges.shape == depth.shape
    assert edge_maps(depth)[12, 10] and not edges[12, 10]
    assert edges[8, 12] and edges[19, 23]
    assert (edges <= edge_maps(depth)).all()


def test_blocks_of_rows_count_every_pair_once(monkeypatch):
    """Maps taller than a block are counted block by block (in threads): the same numbers."""
    import evaluation.boundary as boundary

    rng = np.random.default_rng(4)
    gt = np.exp(rng.normal(1.0, 0.5, (50, 37))).astype(np.float32)
    pred = (gt * np.exp(rng.normal(0, 0.1, gt.shape))).astype(np.float32)
    mask = rng.random(gt.shape) > 0.1
    whole = boundary_counts(pred, gt, mask)
    for rows in (1, 7, 49):
        monkeypatch.setattr(boundary, "BLOCK_ROWS", rows)
        assert (boundary_counts(pred, gt, mask) == whole).all(), rows
    assert si_boundary_f1(pred, gt) == published(pred, gt)


def test_big_maps_are_counted_on_the_usable_cpus_not_all_of_the_machine(monkeypatch):
    """A job limited to 2 CPUs (SLURM's mask, taskset) counts its row blocks on 2 threads, with
    the same counts as on one."""
    import os

    import evaluation.boundary as boundary

    threads = []
    real = boundary.ThreadPoolExecutor

    def recording(workers):
        threads.append(workers)
        return real(workers)

    monkeypatch.setattr(boundary, "ThreadPoolExecutor", recording)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    gt = np.tile(np.linspace(1.0, 3.0, 64, dtype=np.float32), (boundary.BLOCK_ROWS * 3, 1))
    gt[:, 30:] *= 2.0
    counts = boundary_counts(gt * 1.1, gt)
    assert threads == [2]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    np.testing.assert_array_equal(boundary_counts(gt * 1.1, gt), counts)
    assert threads == [2, 1]
