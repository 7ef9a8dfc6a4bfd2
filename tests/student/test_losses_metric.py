"""Canonical depth and the scale-aware log losses of a metric student: the identity at f = f_c,
views resized by s agreeing with the full image, and each loss's invariances."""

from __future__ import annotations

import math

import pytest
import torch

from student.losses.metric import canonical_depth, log_l1_loss, metric_depth, silog_loss


def depth_maps(b: int = 3, h: int = 8, w: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 20 * torch.rand(b, h, w, generator=g)


def test_canonical_depth_is_the_identity_at_the_canonical_focal_length():
    d = depth_maps()
    assert torch.equal(canonical_depth(d, 600.0, 600.0), d)
    assert torch.equal(metric_depth(d, 600.0, 600.0), d)


def test_a_resized_view_is_consistent_with_the_full_image():
    # A view resized by s keeps the metres and sees them with focal length s·fx: its canonical
    # depth is the full image's divided by s, and both give back the same metres.
    d, fx, f_c = depth_maps(), 800.0, 1000.0
    full = canonical_depth(d, fx, f_c)
    for s in (560 / 1500, 0.5, 2.0):
        view = canonical_depth(d, s * fx, f_c)
        assert torch.allclose(view, full / s, rtol=1e-6)
        assert torch.allclose(metric_depth(view, s * fx, f_c), d, rtol=1e-6)


def test_focal_lengths_apply_per_sample():
    d = depth_maps(b=2)
    fx = torch.tensor([500.0, 1000.0])
    c = canonical_depth(d, fx, 1000.0)
    assert torch.allclose(c[0], 2 * d[0]) and torch.allclose(c[1], d[1])
    with pytest.raises(ValueError, match="> 0"):
        canonical_depth(d, torch.tensor([500.0, 0.0]), 1000.0)


def test_silog_is_zero_on_the_target_and_scale_invariant_only_at_lambda_one():
    t = depth_maps()
    valid = torch.ones_like(t, dtype=torch.bool)
    assert float(silog_loss(t, t, valid)) == pytest.approx(0, abs=1e-5)
    scaled = 3 * t
    assert float(silog_loss(scaled, t, valid, lam=1.0)) == pytest.approx(0, abs=1e-5)
    assert float(silog_loss(scaled, t, valid, lam=0.0)) == pytest.approx(math.log(3), rel=1e-5)
    assert float(silog_loss(scaled, t, valid, lam=0.85)) == pytest.approx(
        math.log(3) * math.sqrt(0.15), rel=1e-4
    )
    with pytest.raises(ValueError, match="λ"):
        silog_loss(t, t, valid, lam=1.5)


def test_log_l1_sees_every_scale_and_only_valid_pixels():
    t = depth_maps()
    valid = torch.ones_like(t, dtype=torch.bool)
    assert float(log_l1_loss(2 * t, t, valid)) == pytest.approx(math.log(2), rel=1e-5)
    wrong = t.clone()
    wrong[:, :, :3] = 1000.0  # far off, but masked out
    valid[:, :, :3] = False
    assert float(log_l1_loss(wrong, t, valid)) == pytest.approx(0, abs=1e-6)
    assert float(silog_loss(wrong, t, valid)) == pytest.approx(0, abs=1e-5)


def test_images_without_valid_pixels_count_for_nothing():
    t = depth_maps(b=2)
    valid = torch.ones_like(t, dtype=torch.bool)
    valid[1] = False
    pred = t.clone()
    pred[1] *= 5  # wrong, but it has no valid pixel
    assert float(log_l1_loss(pred, t, valid)) == pytest.approx(0, abs=1e-6)
    none = torch.zeros_like(valid)
    assert float(silog_loss(pred, t, none)) == 0 and float(log_l1_loss(pred, t, none)) == 0


def test_gradients_are_finite_at_the_optimum_and_near_zero_depth():
    t = depth_maps()
    valid = torch.ones_like(t, dtype=torch.bool)
    for pred in (t.clone(), torch.full_like(t, 1e-6)):
        pred.requires_grad_(True)
        (silog_loss(pred, t, valid) + log_l1_loss(pred, t, valid)).backward()
        assert torch.isfinite(pred.grad).all()
