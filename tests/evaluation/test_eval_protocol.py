"""The evaluation protocol against hand-computed values on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.protocol import (
    DATASETS,
    aligned_depth,
    fit_scale_shift,
    score,
    scoring_mask,
    summarize,
)


def test_perfect_disparity_prediction_scores_zero_after_any_affine_change():
    gt = np.linspace(1.0, 5.0, 48).reshape(6, 8)
    pred = 3.0 / gt + 0.7  # disparity up to scale and shift
    result = score(pred, gt, "eth3d", "disparity")
    assert result["abs_rel"] == pytest.approx(0, abs=1e-9) and result["delta1"] == 1.0
    depth_pred = 2 * gt - 0.5
    assert score(depth_pred, gt, "scannet", "depth")["abs_rel"] == pytest.approx(0, abs=1e-9)


def test_nyu_eigen_crop_boundaries_and_strict_range():
    rules = DATASETS.get("nyu")
    gt = np.full((480, 640), 2.0)
    mask = scoring_mask(gt, rules, None)
    assert not mask[44, 100] and mask[45, 100] and mask[470, 100] and not mask[471, 100]
    assert not mask[200, 40] and mask[200, 41] and mask[200, 600] and not mask[200, 601]
    gt[100, 100], gt[101, 101] = 10.0, 1e-3  # exactly at the bounds: invalid (strict)
    mask = scoring_mask(gt, rules, None)
    assert not mask[100, 100] and not mask[101, 101] and mask[102, 102]


def test_kitti_crop_and_diode_mask_only():
    mask = scoring_mask(np.full((352, 1216), 5.0), DATASETS.get("kitti"), None)
    assert mask.sum() == (321 - 117) * (1172 - 43)
    gt = np.array([[0.3, 400.0], [2.0, 5.0]])
    extra = np.array([[1, 1], [1, 0]])
    assert scoring_mask(gt, DATASETS.get("diode"), extra).tolist() == [[True, True], [True, False]]


def test_hand_computed_depth_alignment_and_metrics():
    gt = np.array([[1.0, 2.0], [3.0, 4.0]])
    # normal equations by hand: n=4, Σp=12, Σt=10, Σp²=50, Σpt=38, det=56 -> a=32/56, b=44/56
    pred = np.array([[1.0, 2.0], [3.0, 6.0]])
    a, b = fit_scale_shift(pred.ravel(), gt.ravel())
    assert (a, b) == pytest.approx((4 / 7, 11 / 14))
    est = 4 / 7 * pred + 11 / 14
    result = score(pred, gt, "scannet", "depth")
    assert result["abs_rel"] == pytest.approx(np.mean(np.abs(est - gt) / gt))
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean((est - gt) ** 2)))
    ratio = np.maximum(est / gt, gt / est)
    assert result["delta1"] == pytest.approx(np.mean(ratio < 1.25))


def test_disparity_clipping_and_pixels_left_out_of_the_fit_are_still_scored():
    gt = np.array([[1.0, 2.0, 4.0, 8.0]])
    pred = np.array([[1.0, 0.5, 0.25, -1.0]])  # last pixel: pred ≤ 0, excluded from the fit
    result = score(pred, gt, "eth3d", "disparity")
    # the fit on the first three pixels is exact (disparity = pred); the last pixel's aligned
    # disparity -1 is clipped to 1e-3 -> depth 1000, and it is scored: |1000 - 8| / 8
    assert result["valid_pixels"] == 4
    assert result["abs_rel"] == pytest.approx((1000 - 8) / 8 / 4)
    nyu = np.full((480, 640), 2.0)
    nyu_pred = np.full((480, 640), 0.5)
    nyu_pred[100, 100] = -3.0
    nyu[100, 100] = 4.0
    out = score(nyu_pred, nyu, "nyu", "disparity")  # depth 1000 is clipped to max_depth 10
    n = out["valid_pixels"]
    assert out["abs_rel"] == pytest.approx((10 - 4) / 4 / n, rel=1e-6)


def test_empty_mask_and_degenerate_fit_never_give_nan():
    gt = np.zeros((4, 4))
    assert score(np.ones((4, 4)), gt, "nyu", "depth")["status"] == "empty_mask"
    flat = score(np.ones((4, 4)), np.full((4, 4), 2.0), "scannet", "depth")
    assert flat["status"] == "degenerate_fit" and np.isfinite(flat["abs_rel"])
    summary = summarize([{"status": "empty_mask"}, {**flat}])
    assert summary["empty_mask"] == 1 and summary["degenerate_fit"] == 1
    assert summary["abs_rel"] == pytest.approx(flat["abs_rel"])
    assert summarize([{"status": "empty_mask"}])["abs_rel"] is None


def test_disparity_score_space_differs_in_abs_rel_only_when_it_should():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 5, (20, 20))
    pred = 1.0 / gt * (1 + 0.05 * rng.standard_normal((20, 20)))
    depth_space = score(pred, gt, "eth3d", "disparity")
    disp_space = score(pred, gt, "eth3d", "disparity", score_space="disparity")
    assert depth_space["delta1"] == pytest.approx(disp_space["delta1"])
    assert depth_space["abs_rel"] != pytest.approx(disp_space["abs_rel"], rel=1e-6)
    with pytest.raises(ValueError, match="disparity prediction"):
        score(gt, gt, "eth3d", "depth", score_space="disparity")


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: " + ", ".join(DATASETS.names()) + "$"):
        score(np.ones((2, 2)), np.ones((2, 2)), "spring", "depth")


def test_middlebury_sample_perfect_and_ramp_predictions():
    from evaluation.middlebury import load_motorcycle

    rgb, depth = load_motorcycle()
    assert rgb.shape == (500, 741, 3) and depth.shape == (500, 741)
    valid = np.isfinite(depth)
    assert 0.9 < valid.mean() < 0.95 and 2.0 < depth[valid].min() < depth[valid].max() < 5.1
    disparity = np.where(valid, 1.0 / depth, 0.0)
    perfect = score(disparity, depth, "middlebury", "disparity")
    assert perfect["abs_rel"] == pytest.approx(0, abs=1e-9) and perfect["delta1"] == 1.0
    ramp = np.tile(np.linspace(1.0, 2.0, 741), (500, 1))
    worse = score(ramp, depth, "middlebury", "disparity")
    assert worse["status"] == "ok" and 0.02 < worse["abs_rel"] < 1.0 and worse["delta1"] < 1.0
    # Middlebury's ground truth has sharp edges: boundary F1 is scored, after the alignment
    assert perfect["boundary_f1"] == pytest.approx(1.0) and worse["boundary_f1"] == 0.0
    doubled = score(2.5 * disparity, depth, "middlebury", "disparity")
    assert doubled["boundary_f1"] == pytest.approx(1.0)


def test_boundary_f1_is_scored_after_alignment_on_sharp_sets_only():
    gt = np.full((60, 80), 4.0)
    gt[20:40, 30:50] = 2.0
    disparity = 1.0 / gt
    shifted = disparity + 5.0  # the fit removes the shift: the aligned map is exact
    sharp = score(shifted, gt, "middlebury", "disparity")
    assert sharp["boundary_f1"] == pytest.approx(1.0)
    assert "boundary_f1" not in score(shifted, gt, "scannet", "disparity")
    summary = summarize([sharp, {**sharp, "boundary_f1": 0.5}, {"status": "empty_mask"}])
    assert summary["boundary_f1"] == pytest.approx(0.75)
    assert "boundary_f1" not in summarize([score(shifted, gt, "scannet", "disparity")])


@pytest.mark.slow
def test_scoring_benchmark_runs(capsys):
    from evaluation.bench.score import main

    main(["--repeats", "1", "--samples", "1", "--size", "tiny"])
    out = capsys.readouterr().out
    assert "s per sample" in out and "score/predict" in out


# Depth predictions are scored in depth space only (the protocol refuses disparity scoring of
# depth, tested elsewhere), so that combination is not a case of this test.
@pytest.mark.parametrize(
    ("pred_space", "score_space"),
    [("disparity", "depth"), ("disparity", "disparity"), ("depth", "depth")],
)
def test_streaming_score_equals_align_then_metrics(monkeypatch, pred_space, score_space):
    import evaluation.protocol as protocol

    rng = np.random.default_rng(3)
    gt = rng.uniform(0.5, 12.0, (37, 53))
    gt[rng.random(gt.shape) < 0.2] = np.inf
    pred = 1.0 / np.where(np.isfinite(gt), gt, 2.0) if pred_space == "disparity" else gt.copy()
    pred = np.where(np.isfinite(pred), pred, 1.0) * rng.uniform(0.7, 1.3, gt.shape)
    pred[0, :5] = -0.1  # left out of a disparity fit, still scored
    rules = DATASETS.get("scannet")
    mask = scoring_mask(gt, rules, None)
    depth, _ = protocol.align(pred[mask], gt[mask], rules, pred_space)
    est, ref = (1 / depth, 1 / gt[mask]) if score_space == "disparity" else (depth, gt[mask])
    expected = protocol.metrics(est, ref)
    monkeypatch.setattr(protocol, "BLOCK", 97)  # many blocks, some empty
    result = score(pred, gt, "scannet", pred_space, score_space=score_space)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_results_record_the_eth3d_quirk_as_not_reproduced():
    from evaluation.protocol import protocol_description

    assert protocol_description("eth3d", "disparity")["marigold_eth3d_quirk"].startswith(
        "not reproduced"
    )
    assert "marigold_eth3d_quirk" not in protocol_description("nyu", "disparity")


def test_zero_depth_inside_diodes_mask_is_not_scored():
    gt = np.array([[0.0, 2.0, 4.0, 8.0]])
    pred = 1.0 / np.array([[1.0, 2.0, 4.0, 8.0]])
    result = score(pred, gt, "diode", "disparity", valid_mask=np.ones_like(gt, dtype=bool))
    assert result["valid_pixels"] == 3 and result["abs_rel"] == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("dataset", ["scannet", "eth3d"])  # ETH3D: no upper depth bound
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_prediction_pixels_are_scored_as_the_worst_case_not_dropped(bad, dataset):
    import torch

    from evaluation.device_score import score_tensor

    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 9.0, (40, 60)).astype(np.float32)  # ScanNet range 1e-3..10 m
    pred = (1.0 / gt).astype(np.float32)  # a perfect disparity prediction ...
    broken = pred.copy()
    broken[rng.random(gt.shape) < 0.3] = bad  # ... with 30% of its pixels not finite
    perfect = score(pred, gt, dataset, "disparity")
    got = score(broken, gt, dataset, "disparity")
    assert got["valid_pixels"] == perfect["valid_pixels"] == gt.size
    assert got["nonfinite_pixels"] == int((~np.isfinite(broken)).sum()) > 0
    assert got["abs_rel"] > 0.2 and got["delta1"] < 0.75  # worse, not better, than perfect
    assert np.isfinite(got["abs_rel"]) and np.isfinite(got["rmse"])  # a number in the table
    on_tensor = score_tensor(torch.from_numpy(broken), torch.from_numpy(gt), dataset, "disparity")
    for name in ("abs_rel", "delta1", "rmse", "valid_pixels", "nonfinite_pixels"):
        assert on_tensor[name] == pytest.approx(got[name], rel=1e-9)
    figure, _ = aligned_depth(broken, gt, dataset, "disparity")
    assert np.isfinite(figure).all()
    all_bad = score(np.full_like(gt, bad), gt, dataset, "disparity")  # scored, not skipped
    assert all_bad["status"] == "degenerate_fit" and all_bad["delta1"] < 0.1
    summary = summarize([got, all_bad, perfect])
    assert summary["scored"] == 3 and summary["nonfinite_pred"] == 2
