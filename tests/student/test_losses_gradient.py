"""Multi-scale gradient matching on normalized maps."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from student.losses import gradient_matching
from student.losses.gradient import gradient_matching_residual

NORMS = ["global", "hybrid", "local", "none"]


def ramps(h: int = 32, w: int = 40, batch: int = 2):
    """Target: a ramp along x; prediction: a non-affine function of it (varies along x only)."""
    x = torch.linspace(0.1, 1.0, w, dtype=torch.float64)[None, None, :].expand(batch, h, w)
    return x**3, x.clone()


def scene(batch: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h, dtype=torch.float64)[:, None]
    x = torch.linspace(0, 1, w, dtype=torch.float64)[None, :]
    out = []
    for _ in range(batch):
        a, b, c = torch.rand(3, generator=g, dtype=torch.float64).tolist()
        base = 0.3 + y * (1 + a) + torch.where(x > 0.3 + 0.4 * b, 0.5 * c, 0.0)
        out.append(base + 0.05 * torch.sin(13 * x + 7 * a) * torch.cos(9 * y))
    return torch.stack(out)


@pytest.mark.parametrize("norm", NORMS)
def test_horizontal_ramp_detected_and_layout_independent(norm):
    pred, target = ramps()
    flat = gradient_matching(pred, target, norm=norm)
    four_d = gradient_matching(pred[:, None], target[:, None], norm=norm)
    assert flat.item() > 1e-3
    assert torch.allclose(flat, four_d)
    # the same structure along y gives the same loss (both directions are counted alike)
    vertical = gradient_matching(pred.transpose(1, 2), target.transpose(1, 2), norm=norm)
    assert torch.allclose(flat, vertical)


def test_hand_computed_single_scale():
    r = torch.tensor([[[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    valid = torch.ones_like(r, dtype=torch.bool)
    # x pairs: |1-0| + |3-1| + 0 + 0 = 3; y pairs: 0 + 1 + 3 = 4; 6 valid pixels
    assert math.isclose(gradient_matching_residual(r, valid, 1).item(), 7 / 6)
    valid[0, 0, 2] = False  # drops |3-1| and the y pair |0-3|; 5 valid pixels
    assert math.isclose(gradient_matching_residual(r, valid, 1).item(), 2 / 5)
    # scale 1 (every 2nd pixel): pixels (0,0), (0,2): one x pair |3 - 0|
    full = torch.ones_like(valid)
    expected = 7 / 6 + 3 / 2
    assert math.isclose(gradient_matching_residual(r, full, 2).item(), expected)


@pytest.mark.parametrize("norm", NORMS)
def test_zero_on_identical_maps(norm):
    t = scene(2, 24, 24, 0)
    assert gradient_matching(t, t.clone(), norm=norm).item() == 0.0


@settings(max_examples=10, deadline=None)
@given(
    a=st.floats(0.1, 10.0),
    b=st.floats(-5.0, 5.0),
    c=st.floats(0.1, 10.0),
    d=st.floats(-5.0, 5.0),
    seed=st.integers(0, 30),
)
def test_affine_invariance(a, b, c, d, seed):
    t = scene(2, 24, 24, seed)
    p = t**2 + 0.02 * scene(2, 24, 24, seed + 1)
    for norm in ("global", "hybrid", "local"):
        base = gradient_matching(p, t, norm=norm, eps=1e-12)
        moved = gradient_matching(a * p + b, c * t + d, norm=norm, eps=1e-12)
        assert math.isclose(moved.item(), base.item(), rel_tol=1e-6, abs_tol=1e-12), norm


def test_mask_respected_and_finite():
    t = scene(2, 24, 24, 3)
    p = (t**2).requires_grad_()
    mask = torch.rand(t.shape, generator=torch.Generator().manual_seed(1)) > 0.3
    base = gradient_matching(p, t, mask, "hybrid")
    t2 = t.clone()
    t2[~mask] = float("nan")
    assert torch.allclose(gradient_matching(p, t2, mask, "hybrid"), base)
    (grad,) = torch.autograd.grad(gradient_matching(p, t, torch.zeros_like(mask), "hybrid"), p)
    assert torch.isfinite(grad).all() and (grad == 0).all()


def test_flat_maps_give_a_finite_gradient_loss_and_gradient():
    t = torch.full((2, 16, 16), 0.5)
    p = torch.zeros(2, 16, 16, requires_grad=True)
    for norm in NORMS:
        loss = gradient_matching(p, t, norm=norm)
        (grad,) = torch.autograd.grad(loss, p)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_gradient_matching_needs_at_least_one_scale():
    t = scene(1, 8, 8, 0)
    with pytest.raises(ValueError, match="scales"):
        gradient_matching(t, t, scales=0)
