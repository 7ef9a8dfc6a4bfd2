"""Histogram selection of per-context lower medians against `torch.median`."""

from __future__ import annotations

import pytest
import torch

from student.losses import _select
from student.losses._select import context_medians

LEVEL_SETS = [(1,), (4,), (1, 2, 4), (2, 4)]


def check_against_median(x: torch.Tensor, fine: torch.Tensor, valid: torch.Tensor, levels):
    n_fine = max(levels)
    med, count = context_medians(x, torch.where(valid, fine, n_fine), n_fine, levels)
    for m in range(x.shape[0]):
        for b in range(x.shape[1]):
            col = 0
            for s in levels:
                for k in range(s):
                    sel = valid[b] & (fine[b] // (n_fine // s) == k)
                    assert count[b, col] == sel.sum()
                    want = torch.median(x[m, b][sel]) if sel.any() else x.new_zeros(())
                    assert med[m, b, col] == want, (m, b, s, k)
                    col += 1


def random_case(seed: int, dtype: torch.dtype, n_fine: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 200, generator=g, dtype=torch.float64) * 3
    if seed % 3 == 0:
        x = torch.round(x)  # many ties
    if seed % 4 == 0:
        x[:, 1] = 0.25  # a flat image
    if seed % 5 == 0:
        x[0] = -x[0].abs()  # negative values
    fine = torch.randint(0, n_fine, (3, 200), generator=g)
    valid = torch.rand(3, 200, generator=g) > 0.3
    if seed % 2 == 0:
        valid[2] = False
    return torch.where(valid, x.to(dtype), 0), fine, valid


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("levels", LEVEL_SETS)
def test_matches_torch_median(dtype, levels):
    for seed in range(8):
        check_against_median(*random_case(seed, dtype, max(levels)), levels)


@pytest.mark.parametrize("levels", LEVEL_SETS)
def test_refinement_and_sort_paths(monkeypatch, levels):
    """Force the refinement passes (tiny sort limit) and a coarse first pass."""
    monkeypatch.setattr(_select, "SORT_LIMIT", 0)
    monkeypatch.setattr(_select, "MAX_BINS", 4)
    for seed in range(6):
        check_against_median(*random_case(seed, torch.float32, max(levels)), levels)


def test_skewed_values_and_duplicates():
    """A large block of one value plus a long tail: candidates settle without a full sort."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.zeros(3000), torch.rand(1000, generator=g) * 1e-6, torch.rand(500) * 50])
    x = x[torch.randperm(x.numel(), generator=g)].view(1, 1, -1).float()
    fine = torch.randint(0, 4, (1, x.shape[-1]), generator=g)
    valid = torch.ones(1, x.shape[-1], dtype=torch.bool)
    check_against_median(x, fine, valid, (1, 2, 4))


def test_gradient_reaches_the_median_element():
    x = torch.tensor([[[3.0, 1.0, 2.0, 5.0]]], requires_grad=True)
    fine = torch.zeros(1, 4, dtype=torch.int64)
    med, _ = context_medians(x, fine, 1, (1,))
    med.sum().backward()
    assert x.grad.tolist() == [[[0.0, 0.0, 1.0, 0.0]]]


def test_extreme_finite_values():
    big = torch.finfo(torch.float32).max
    x = torch.tensor([[[-big, big, 0.0, 1.0, -1.0, big / 2]]])
    check_against_median(
        x, torch.zeros(1, 6, dtype=torch.int64), torch.ones(1, 6, dtype=torch.bool), (1,)
    )
