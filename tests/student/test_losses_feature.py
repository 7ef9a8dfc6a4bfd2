"""Feature alignment with the frozen initial encoder."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from student.losses import FeatureAlignment, feature_alignment


def tokens(seed: int, b: int = 2, n: int = 16, c: int = 8) -> torch.Tensor:
    return torch.randn(b, n, c, generator=torch.Generator().manual_seed(seed))


def test_zero_when_all_tokens_within_margin():
    frozen = tokens(0)
    student = (frozen + 0.01 * tokens(1)).requires_grad_()
    loss = feature_alignment(student, frozen)
    assert loss.item() == 0.0
    loss.backward()
    assert (student.grad == 0).all()


def test_positive_otherwise_and_gradients_reach_student_only():
    frozen = tokens(0).requires_grad_()
    student = tokens(1).requires_grad_()
    loss = feature_alignment(student, frozen)
    assert loss.item() > 0.5
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert frozen.grad is None


def test_reduction_all_versus_kept():
    """Half the tokens aligned (contribute 0), half orthogonal (1 - cos = 1)."""
    frozen = torch.zeros(1, 4, 2)
    frozen[..., 0] = 1.0
    student = frozen.clone()
    student[0, 2:] = torch.tensor([0.0, 1.0])
    assert math.isclose(feature_alignment(student, frozen, reduction="all").item(), 0.5)
    assert math.isclose(feature_alignment(student, frozen, reduction="kept").item(), 1.0)
    assert feature_alignment(frozen, frozen, reduction="kept").item() == 0.0


def test_only_tokens_below_the_margin_count_and_by_their_gap():
    frozen = torch.tensor([[[1.0, 0.0]]])
    angle = math.acos(0.8)  # cos 0.8 < 0.85: kept, contributes 0.2
    student = torch.tensor([[[math.cos(angle), math.sin(angle)]]])
    assert math.isclose(feature_alignment(student, frozen).item(), 0.2, rel_tol=1e-5)
    assert feature_alignment(student, frozen, margin=0.75).item() == 0.0


def test_module_projection_when_widths_differ():
    module = FeatureAlignment(student_dim=6, frozen_dim=8)
    assert isinstance(module.proj, nn.Linear)
    loss = module(tokens(1, c=6), tokens(0, c=8))
    loss.backward()
    assert module.proj.weight.grad is not None and module.proj.weight.grad.abs().sum() > 0
    assert isinstance(FeatureAlignment(8, 8).proj, nn.Identity)


def test_feature_alignment_refuses_mismatched_shapes_reduction_and_margin():
    with pytest.raises(ValueError, match="frozen_feats"):
        feature_alignment(tokens(0), tokens(1, c=4))
    with pytest.raises(ValueError, match="student_feats"):
        feature_alignment(tokens(0)[0], tokens(1)[0])
    with pytest.raises(ValueError, match="reduction"):
        feature_alignment(tokens(0), tokens(1), reduction="sum")
    with pytest.raises(ValueError, match="margin"):
        feature_alignment(tokens(0), tokens(1), margin=2.0)
    with pytest.raises(ValueError, match="student_feats"):
        FeatureAlignment(6, 8)(tokens(0, c=8), tokens(1, c=8))
