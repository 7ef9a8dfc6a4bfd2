"""The tensor scorer (used on a CUDA device) gives the numpy protocol's numbers, run on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evaluation.datasets import open_dataset
from evaluation.device_score import resize_tensor, score_tensor
from evaluation.protocol import score
from evaluation.score import ScoreSettings, resize_bilinear, score_all, score_device
from pipeline.toolkit.launch import Launch


def _sample(shape=(480, 640), seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.3, 90.0, shape).astype(np.float32)
    gt[rng.random(shape) < 0.15] = 0.0
    gt[rng.random(shape) < 0.05] = np.inf
    finite = np.where(np.isfinite(gt) & (gt > 0), gt, 5.0)
    disparity = (2.0 / finite + 0.1) * rng.uniform(0.8, 1.2, shape)
    disparity[:3, :7] = -0.2  # left out of a disparity fit, still scored
    mask = rng.random(shape) > 0.1
    return gt, disparity.astype(np.float32), mask


@pytest.mark.parametrize("dataset", ["nyu", "kitti", "eth3d", "scannet", "diode", "middlebury"])
@pytest.mark.parametrize(
    ("pred_space", "score_space"),
    [("disparity", "depth"), ("disparity", "disparity"), ("depth", "depth")],
)
def test_tensor_score_equals_numpy_score(dataset, pred_space, score_space):
    shape = (352, 1216) if dataset == "kitti" else (480, 640)
    gt, disparity, extra = _sample(shape)
    pred = disparity if pred_space == "disparity" else 1.0 / np.maximum(disparity, 1e-2)
    extra = extra if dataset == "diode" else None
    want = score(pred, gt, dataset, pred_space, extra, score_space)
    got = score_tensor(
        torch.from_numpy(pred),
        torch.from_numpy(gt),
        dataset,
        pred_space,
        None if extra is None else torch.from_numpy(extra),
        score_space,
    )
    assert got["status"] == want["status"] and got["valid_pixels"] == want["valid_pixels"]
    for name in ("abs_rel", "delta1", "delta2", "delta3", "rmse"):
        assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), name
    assert ("boundary_f1" in got) == ("boundary_f1" in want) == (dataset == "middlebury")
    if dataset == "middlebury":
        assert got["boundary_f1"] == pytest.approx(want["boundary_f1"], rel=1e-9)


def test_tensor_score_empty_and_degenerate():
    gt = np.full((8, 8), np.inf, dtype=np.float32)
    assert score_tensor(torch.ones(8, 8), torch.from_numpy(gt), "eth3d", "disparity") == {
        "status": "empty_mask",
        "valid_pixels": 0,
        "nonfinite_pixels": 0,
    }
    flat = score_tensor(torch.ones(8, 8), torch.full((8, 8), 2.0), "eth3d", "depth")
    assert flat["status"] == "degenerate_fit" and np.isfinite(flat["abs_rel"])


@pytest.mark.parametrize(
    ("pred_space", "score_space", "message"),
    [
        ("depth", "disparity", "needs a disparity prediction"),
        ("disparity", "disp", "got 'disp'"),
        ("inverse", "depth", "got 'inverse'"),
    ],
)
def test_tensor_score_checks_its_arguments_as_numpy_score_does(pred_space, score_space, message):
    gt, pred = np.full((8, 8), 2.0), np.full((8, 8), 0.5)
    with pytest.raises(ValueError, match=message):
        score(pred, gt, "nyu", pred_space, None, score_space)
    with pytest.raises(ValueError, match=message):
        score_tensor(
            torch.from_numpy(pred), torch.from_numpy(gt), "nyu", pred_space, None, score_space
        )
    with pytest.raises(ValueError, match="differ in shape"):
        score_tensor(torch.ones(4, 4), torch.ones(4, 5), "nyu", "disparity")


def test_tensor_resize_equals_numpy_resize():
    small = np.random.default_rng(1).random((25, 37)).astype(np.float32)
    for size in ((50, 74), (12, 18)):
        np.testing.assert_array_equal(
            resize_tensor(torch.from_numpy(small), size).numpy(), resize_bilinear(small, size)
        )


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8"])  # big-endian and float64 files too
def test_scoring_on_a_device_gives_the_same_summary(monkeypatch, tmp_path, dtype):
    import evaluation.score as score_module
    from evaluation.middlebury import load_motorcycle

    _, depth = load_motorcycle()
    path = tmp_path / "predictions" / "middlebury" / "motorcycle.npy"
    path.parent.mkdir(parents=True)
    pred = np.tile(np.linspace(1.0, 2.0, 370, dtype=np.float32), (250, 1))
    np.save(path, pred.astype(dtype))
    settings, launch = ScoreSettings(pred_space="disparity"), Launch(device="cpu", workers=0)
    ds = [open_dataset("middlebury")]
    on_cpu = score_all(tmp_path, ds, settings, launch)["datasets"]["middlebury"]
    monkeypatch.setattr(score_module, "score_device", lambda device: torch.device("cpu"))
    on_device = score_all(tmp_path, ds, settings, launch)["datasets"]["middlebury"]
    (row,) = json.loads((tmp_path / "per_sample.json").read_text())["samples"]
    assert row["key"] == "motorcycle" and row["boundary_f1"] == pytest.approx(on_cpu["boundary_f1"])
    for name in ("abs_rel", "delta1", "rmse", "scored", "boundary_f1"):
        assert on_device[name] == pytest.approx(on_cpu[name], rel=1e-9)


@pytest.mark.parametrize(
    ("pred_space", "score_space"), [("depth", "disparity"), ("disparity", "d")]
)
def test_score_all_refuses_bad_spaces_before_scoring(tmp_path, pred_space, score_space):
    settings = ScoreSettings(pred_space=pred_space, score_space=score_space)
    with pytest.raises(ValueError, match="score_space"):
        score_all(tmp_path, [open_dataset("middlebury")], settings, Launch(workers=0))


def test_auto_device_is_this_ranks_gpu(monkeypatch):
    """`evaluation --device auto` follows the one device rule: LOCAL_RANK picks the GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert score_device("auto") == torch.device("cuda", 3)
    assert score_device("cpu") is None
