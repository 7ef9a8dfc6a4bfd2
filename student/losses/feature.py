"""Feature alignment with a frozen copy of the student's initial encoder (Depth Anything lineage).

`L_feat = (1 / (B·N)) · Σ over tokens of (1 - cos(f_student, f_frozen)) · [cos ≤ margin]`:
tokens whose cosine similarity is above `margin` (0.85) contribute 0.

Mean over ALL tokens by default (`reduction="all"`): each token keeps the weight 1/(B·N) whether or
not others are within the margin, so the term shrinks towards 0 as tokens align and does not jump
when a token crosses the margin; `reduction="kept"` averages over the tokens above the tolerance
only (the Depth Anything wording "not considered"), 0 when none is left.

Shapes: `[B, N, C]` patch tokens (the caller drops the CLS token). Gradients reach the student
tokens only: the frozen tokens are detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS = ("all", "kept")


def _check(student_feats: Tensor, frozen_feats: Tensor, margin: float, reduction: str) -> None:
    if student_feats.dim() != 3:
        raise ValueError(f"student_feats must be [B, N, C], got {tuple(student_feats.shape)}")
    if frozen_feats.shape != student_feats.shape:
        raise ValueError(
            f"frozen_feats must have the shape of student_feats {tuple(student_feats.shape)}, "
            f"got {tuple(frozen_feats.shape)}"
        )
    if not -1.0 <= margin <= 1.0:
        raise ValueError(f"margin must be in [-1, 1], got {margin}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")


def feature_alignment(
    student_feats: Tensor, frozen_feats: Tensor, margin: float = 0.85, reduction: str = "all"
) -> Tensor:
    """Scalar `mean(1 - cos)` over tokens, tokens with `cos > margin` contributing 0.

    student_feats, frozen_feats: `[B, N, C]`; reduction: `all` (divide by B·N) or `kept`.
    """
    _check(student_feats, frozen_feats, margin, reduction)
    dtype = torch.promote_types(torch.float32, student_feats.dtype)
    frozen = frozen_feats.detach().to(dtype)
    cos = F.cosine_similarity(student_feats.to(dtype), frozen, dim=-1)
    keep = cos <= margin
    loss = torch.where(keep, 1.0 - cos, 0.0).sum()
    if reduction == "all":
        return loss / max(cos.numel(), 1)
    return loss / keep.sum().clamp(min=1)


class FeatureAlignment(nn.Module):
    """Feature alignment with a linear projection of the student tokens when widths differ.

    forward(student_feats `[B, N, student_dim]`, frozen_feats `[B, N, frozen_dim]`) -> scalar.
    """

    def __init__(
        self, student_dim: int, frozen_dim: int, margin: float = 0.85, reduction: str = "all"
    ) -> None:
        super().__init__()
        if student_dim < 1 or frozen_dim < 1:
            raise ValueError(
                f"student_dim and frozen_dim must be ≥ 1, got {student_dim}, {frozen_dim}"
            )
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
        self.student_dim, self.margin, self.reduction = student_dim, margin, reduction
        self.proj: nn.Module = (
            nn.Identity() if student_dim == frozen_dim else nn.Linear(student_dim, frozen_dim)
        )

    def forward(self, student_feats: Tensor, frozen_feats: Tensor) -> Tensor:
        if student_feats.shape[-1] != self.student_dim:
            raise ValueError(
                f"student_feats must have {self.student_dim} channels, "
                f"got {tuple(student_feats.shape)}"
            )
        projected = self.proj(student_feats)
        return feature_alignment(projected, frozen_feats, self.margin, self.reduction)
