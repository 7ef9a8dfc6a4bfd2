"""Normalized L1 distillation loss: invariances, masks, medians, contexts, reference, flat maps."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from student.losses import NORMALIZATIONS, normalized_l1, normalized_maps
from student.losses.normalize import fine_bins
from student.losses.reference import reference_normalized_l1

NORMS = ["global", "hybrid", "local", "none"]
SSI_NORMS = ["global", "hybrid", "local"]


def scene(batch: int, h: int, w: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Depth-like disparity `[B, H, W]`: a tilted ground plane, a wall, a disc, mild texture."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h, dtype=dtype)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w, dtype=dtype)[None, :].expand(h, w)
    maps = []
    for _ in range(batch):
        a, b, c, cx, cy = torch.rand(5, generator=g, dtype=dtype).tolist()
        ground = 0.2 + 1.5 * y * (0.5 + a)
        wall = torch.where(x > 0.3 + 0.4 * b, 0.6 + 0.3 * c, 0.0)
        disc = torch.where((x - cx) ** 2 + (y - cy) ** 2 < 0.04, 0.8, 0.0)
        texture = 0.05 * torch.sin(17 * x + 5 * a) * torch.cos(11 * y + 3 * b)
        maps.append(torch.maximum(ground, wall) + disc + texture)
    return torch.stack(maps)


def pair(batch: int = 3, h: int = 24, w: int = 32, seed: int = 0, dtype=torch.float64):
    """A target scene and a prediction that differs non-affinely (distorted, noisy)."""
    t = scene(batch, h, w, seed, dtype)
    g = torch.Generator().manual_seed(seed + 100)
    p = 0.7 * t + 0.3 * t**2 + 0.05 * torch.randn(t.shape, generator=g, dtype=dtype)
    return p, t


def random_mask(shape, seed: int, keep: float = 0.7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < keep


def test_registry_names():
    assert set(NORMALIZATIONS) == {"global", "hybrid", "local", "none"}
    assert NORMALIZATIONS["hybrid"] == (1, 2, 4)
    with pytest.raises(ValueError, match="global, hybrid, local, none"):
        normalized_l1(*pair(), norm="median")


@pytest.mark.parametrize("norm", NORMS)
def test_zero_on_identical_maps(norm):
    p, _ = pair()
    assert normalized_l1(p, p.clone(), norm=norm).item() == 0.0


@settings(max_examples=20, deadline=None)
@given(
    a=st.floats(0.1, 10.0),
    b=st.floats(-5.0, 5.0),
    c=st.floats(0.1, 10.0),
    d=st.floats(-5.0, 5.0),
    seed=st.integers(0, 50),
)
def test_affine_invariance(a, b, c, d, seed):
    """Exact invariance with a negligible eps (the MAD guard is the only non-invariant part)."""
    p, t = pair(seed=seed)
    mask = random_mask(p.shape, seed)
    for norm in SSI_NORMS:
        base = normalized_l1(p, t, mask, norm, eps=1e-12)
        moved = normalized_l1(a * p + b, c * t + d, mask, norm, eps=1e-12)
        assert math.isclose(moved.item(), base.item(), rel_tol=1e-6, abs_tol=1e-12), norm


@pytest.mark.parametrize("norm", SSI_NORMS)
def test_affine_invariance_default_eps(norm):
    p, t = pair(seed=5, dtype=torch.float32)
    base = normalized_l1(p, t, None, norm)
    moved = normalized_l1(3.0 * p - 1.0, 0.5 * t + 2.0, None, norm)
    assert math.isclose(moved.item(), base.item(), rel_tol=1e-3)


def test_none_is_raw_l1():
    p, t = pair()
    mask = random_mask(p.shape, 1)
    per_image = [(p[i] - t[i]).abs()[mask[i]].mean() for i in range(p.shape[0])]
    assert torch.allclose(normalized_l1(p, t, mask, "none"), torch.stack(per_image).mean())


@pytest.mark.parametrize("norm", NORMS)
def test_masked_out_pixels_are_ignored(norm):
    p, t = pair()
    mask = random_mask(p.shape, 3)
    base = normalized_l1(p, t, mask, norm)
    p2, t2 = p.clone(), t.clone()
    p2[~mask] = torch.randn(int((~mask).sum()), dtype=p.dtype) * 100
    t2[~mask] = float("nan")
    t2[~mask & (torch.arange(p.numel()).view(p.shape) % 2 == 0)] = 1e6
    assert torch.allclose(normalized_l1(p2, t2, mask, norm), base, rtol=1e-12)


@pytest.mark.parametrize("norm", SSI_NORMS)
def test_median_over_valid_pixels_only(norm):
    """Regression for the `mask * x` defect: masked zeros must not enter the median."""
    p, t = pair(batch=2, h=16, w=32)
    t, p = t + 5.0, p + 5.0  # valid values far from 0, so counting masked zeros would matter
    mask = torch.zeros_like(t, dtype=torch.bool)
    mask[..., :10] = True  # 10 of 32 columns valid: zeros would be the majority
    loss = normalized_l1(p, t, mask, norm)
    cropped = normalized_l1(p[..., :10], t[..., :10], None, norm)
    assert torch.allclose(loss, cropped, rtol=1e-12)
    norm_p, norm_t, valid = normalized_maps(p, t, mask, "global")
    assert torch.allclose(norm_t[valid].median(), torch.tensor(0.0, dtype=t.dtype))


def test_lower_median_and_mad_for_even_count():
    t = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]], dtype=torch.float64)
    _, norm_t, _ = normalized_maps(t, t, None, "global", eps=0.0)
    # lower median 2, mean absolute deviation (1 + 0 + 1 + 2) / 4 = 1
    assert torch.allclose(norm_t, torch.tensor([[[-1.0, 0.0, 1.0, 2.0]]], dtype=torch.float64))


def test_maximum_pixel_in_top_context():
    t = torch.tensor([[[0.0, 0.0, 0.9, 1.0]]], dtype=torch.float64)
    valid = torch.ones_like(t, dtype=torch.bool)
    for s in (1, 2, 4):
        assert fine_bins(t, valid, s)[0, 3].item() == s - 1
    # local: top range [0.75, 1] = {0.9, 1.0}; pred reverses them: each pixel's loss is 2
    p = torch.tensor([[[0.0, 0.0, 1.0, 0.5]]], dtype=torch.float64)
    loss = normalized_l1(p, t, None, "local")
    assert math.isclose(loss.item(), (0 + 0 + 2 + 2) / 4, rel_tol=1e-4)


def test_hybrid_pixel_in_three_contexts():
    """Hybrid = mean of the three levels' losses (each pixel in exactly one context per level)."""
    p, t = pair(seed=4)
    from student.losses._common import prepare
    from student.losses.normalize import _normalized_levels

    pp, tt, valid = prepare(p, t, None)
    levels = _normalized_levels(pp, tt, valid, (1, 2, 4), 1e-6)
    per_level = [(norm_p - norm_t).abs().sum(1) for norm_p, norm_t in levels]
    count = valid.flatten(1).sum(1)
    assert len(per_level) == 3
    expected = (sum(per_level) / 3 / count).mean()
    assert torch.allclose(normalized_l1(p, t, None, "hybrid"), expected)
    assert torch.allclose(normalized_l1(p, t, None, "global"), (per_level[0] / count).mean())


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("four_d", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equals_reference(norm, four_d, dtype):
    p, t = pair(batch=4, h=20, w=28, seed=7, dtype=dtype)
    mask = random_mask(p.shape, 8)
    mask[2] = False  # an image without valid pixels
    t[0, 0, :5] = float("nan")  # non-finite labels are invalid too
    if four_d:
        p, t, mask = p[:, None], t[:, None], mask[:, None]
    p = p.clone().requires_grad_()
    ours = normalized_l1(p, t, mask, norm)
    (g_ours,) = torch.autograd.grad(ours, p)
    ref = reference_normalized_l1(p, t, mask, norm)
    (g_ref,) = torch.autograd.grad(ref, p)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert torch.allclose(ours, ref, rtol=tol, atol=tol)
    assert torch.allclose(g_ours, g_ref, rtol=1e-4, atol=tol)
    assert torch.isfinite(g_ours).all()


def test_equals_reference_with_ties_and_flat_regions():
    p, t = pair(batch=2, h=16, w=16, seed=9)
    t = torch.round(t * 4) / 4  # many equal target values (edges hit exactly)
    p = torch.round(p * 8) / 8
    p[1, :8] = 0.5  # a flat prediction region
    for norm in NORMS:
        ours = normalized_l1(p, t, None, norm)
        assert torch.allclose(ours, reference_normalized_l1(p, t, None, norm), rtol=1e-10)


def test_empty_images_weighting():
    """An image without valid pixels neither contributes nor counts in the batch mean."""
    p, t = pair(batch=2)
    mask = torch.ones_like(p, dtype=torch.bool)
    mask[1] = False
    both = normalized_l1(p, t, mask, "hybrid")
    alone = normalized_l1(p[:1], t[:1], None, "hybrid")
    assert torch.allclose(both, alone)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(
    "case", ["flat_target", "flat_pred", "both_flat", "zeros", "empty_mask", "one_pixel"]
)
def test_finite_on_degenerate_inputs(norm, case):
    p, t = pair(batch=2, dtype=torch.float32)
    mask = None
    if case in ("flat_target", "both_flat"):
        t = torch.full_like(t, 0.3)
    if case in ("flat_pred", "both_flat"):
        p = torch.full_like(p, -2.0)
    if case == "zeros":
        p, t = torch.zeros_like(p), torch.zeros_like(t)
    if case == "empty_mask":
        mask = torch.zeros_like(p, dtype=torch.bool)
    if case == "one_pixel":
        mask = torch.zeros_like(p, dtype=torch.bool)
        mask[:, 3, 4] = True
    p = p.clone().requires_grad_()
    loss = normalized_l1(p, t, mask, norm)
    (grad,) = torch.autograd.grad(loss, p)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    if case in ("empty_mask", "zeros", "both_flat", "one_pixel") and norm != "none":
        assert loss.item() == 0.0


def test_random_init_teacher_near_flat_is_finite():
    t = 1e-7 * torch.randn(2, 16, 16)
    p = torch.randn(2, 16, 16, requires_grad=True)
    for norm in NORMS:
        loss = normalized_l1(p, t, None, norm)
        (grad,) = torch.autograd.grad(loss, p)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_validation_errors():
    p, t = pair()
    with pytest.raises(ValueError, match="same shape"):
        normalized_l1(p, t[:, :-1])
    with pytest.raises(ValueError, match="mask"):
        normalized_l1(p, t, torch.ones(p.shape, dtype=torch.int64))
    with pytest.raises(ValueError, match="pred"):
        normalized_l1(p[:, None].expand(-1, 2, -1, -1), t[:, None].expand(-1, 2, -1, -1))


def test_low_precision_inputs_compute_in_float32():
    p, t = pair(dtype=torch.float32)
    p16 = p.to(torch.bfloat16).requires_grad_()
    loss = normalized_l1(p16, t, None, "hybrid")
    assert loss.dtype == torch.float32
    expected = normalized_l1(p16.detach().float(), t, None, "hybrid")
    assert torch.allclose(loss, expected)
    loss.backward()
    assert p16.grad.dtype == torch.bfloat16 and torch.isfinite(p16.grad.float()).all()


@pytest.mark.parametrize("norm", SSI_NORMS)
def test_target_gradient_when_required(norm):
    """Labels need no gradient, but a target that requires one gets the reference's."""
    p, t = pair(batch=2, h=12, w=14, seed=11)
    t = t.clone().requires_grad_()
    (ours,) = torch.autograd.grad(normalized_l1(p, t, None, norm), t)
    (ref,) = torch.autograd.grad(reference_normalized_l1(p, t, None, norm), t)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("h, w", [(7, 9), (6, 5), (10, 13)])
def test_equals_reference_any_pixel_count(h, w):
    """Pixel counts not divisible by the 8 summation lanes (1, 2 or 4 lanes) give the same loss."""
    p, t = pair(batch=2, h=h, w=w, seed=h * w)
    p = p.clone().requires_grad_()
    for norm in ("hybrid", "local"):
        ours = normalized_l1(p, t, None, norm)
        ref = reference_normalized_l1(p, t, None, norm)
        (g_ours,) = torch.autograd.grad(ours, p)
        (g_ref,) = torch.autograd.grad(ref, p)
        assert torch.allclose(ours, ref, rtol=1e-10)
        assert torch.allclose(g_ours, g_ref, rtol=1e-6, atol=1e-12)
