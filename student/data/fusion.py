"""Teacher roles and the averaging control of v2 Table 4 (`data.teacher_mix=average`).

Roles (`data.teacher_roles`, in `--teacher` order): `primary` or `assistant`, v2's
"assistant-guided distillation" (Depth Anything V2 as the primary teacher, GenPercept as its
assistant). With roles and no `teacher_weights`, the primary is drawn with probability 0.7 and the
assistants share 0.3 (`role_weights`), the selection the paper keeps.

Averaging. The paper's control is "a weighted average that gives more weight to pixels where the
two teachers agree" and gives no formula. Ours, per label map (`full`, `r{k}.sc`, `r{k}.t{j}`), in
disparity space, before the view's flip and resize (which are the same for every teacher):

1. each teacher's map is resized to the first teacher's map size (bilinear) when they differ,
   and normalized over its finite pixels: `n_i = (d_i - median_i) / mean|d_i - median_i|` (like
   the losses' `global` normalization, whose median of an even count is the lower middle value
   where this one averages the two), since affine-invariant teachers share no scale;
2. the fused label is `f = sum_i w_i n_i` with the teachers' weights `w_i` (those of the
   selection: `teacher_weights`, or the roles' 0.7 / 0.3);
3. a pixel's disagreement is `sum_i w_i |n_i - f|`, and the pixels where the teachers agree best
   keep full weight: those whose disagreement is at most the `average_keep` quantile of the
   map's finite pixels (ties, and disagreements under `AGREE`, kept: maps that agree everywhere
   lose nothing); the others get weight 0 (NaN, left out of the loss as any invalid label is).

Weights are 1 or 0 because every loss term takes a label map and its validity, not per-pixel
weights (the hybrid term's custom backward, `losses/_context.py`, has none). A pixel that is not
finite for every teacher is NaN in the fused map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from student.data.samples import resize_label
from student.data.schedule import normalized_weights

ROLES = ("primary", "assistant")
MIXES = ("select", "average")
"""`data.teacher_mix`: `select` (each iteration, or sample, learns from one teacher drawn with the
teacher weights: v2's selection) or `average` (from the fused label of all teachers)."""
PRIMARY_SHARE = 0.7
"""The primary teacher's probability under roles without explicit weights (v2: 7:3)."""
AGREE = 0.01
"""A disagreement below this (in units of the maps' mean absolute deviation) is agreement: the
rounding of maps equal up to scale and shift (float16 label storage) leaves no pixel out."""
AVERAGE = "average"
"""The teacher name a fused batch records (`metrics.jsonl`'s `teacher`)."""


def check_roles(roles: Sequence[str], n_teachers: int) -> None:
    """Roles given for `n_teachers` teachers: one per teacher, each a role, exactly one primary."""
    if not roles:
        return
    if len(roles) != n_teachers:
        raise ValueError(
            f"data.teacher_roles has {len(roles)} roles for {n_teachers} teachers: give one per "
            "--teacher, in the same order (e.g. [primary, assistant])"
        )
    bad = sorted(set(roles) - set(ROLES))
    if bad:
        raise ValueError(f"data.teacher_roles: {bad} not among {list(ROLES)}")
    if list(roles).count("primary") != 1:
        raise ValueError(f"data.teacher_roles needs exactly one primary, got {list(roles)}")


def role_weights(roles: Sequence[str]) -> list[float]:
    """Probabilities from roles: the primary 0.7, the assistants 0.3 shared equally (a lone
    primary: 1)."""
    assistants = list(roles).count("assistant")
    if assistants == 0:
        return [1.0 for _ in roles]
    return [PRIMARY_SHARE if r == "primary" else (1 - PRIMARY_SHARE) / assistants for r in roles]


def _normalized(values: np.ndarray) -> np.ndarray:
    """`(d - median) / mean|d - median|` over the finite pixels (NaN elsewhere)."""
    finite = np.isfinite(values)
    out = np.full(values.shape, np.nan, np.float32)
    if not finite.any():
        return out
    v = values[finite].astype(np.float64)
    med = np.median(v)
    scale = np.abs(v - med).mean()
    out[finite] = (v - med) / (scale + 1e-6)
    return out


def fuse(maps: Sequence[np.ndarray], weights: Sequence[float], keep: float) -> np.ndarray:
    """The averaged label of one view (module docstring): float32 at the first map's size."""
    if len(maps) != len(weights) or not maps:
        raise ValueError(f"{len(maps)} maps for {len(weights)} weights")
    if not 0 < keep <= 1:
        raise ValueError(f"data.average_keep must be in (0, 1], got {keep}")
    w = np.asarray(weights, np.float64) / float(np.sum(weights))
    shape = maps[0].shape
    normed = np.stack([_normalized(resize_label(m, shape)) for m in maps])
    fused = np.tensordot(w, normed, axes=1)
    disagreement = np.tensordot(w, np.abs(normed - fused), axes=1)
    finite = np.isfinite(fused)
    out = np.where(finite, fused, np.nan).astype(np.float32)
    if keep < 1 and finite.any():
        limit = max(np.quantile(disagreement[finite], keep, method="higher"), AGREE)
        out[finite & (disagreement > limit)] = np.nan
    return out


def fused_reader(
    read: Callable[[str, str, str], np.ndarray],
    key: str,
    teachers: Sequence[str],
    weights: Sequence[float],
    keep: float,
) -> Callable[[str], np.ndarray]:
    """`read(map name)` of the fused teacher for image `key`, from `read(teacher, key, map
    name)` of each teacher (an open shard's `read`)."""

    def read_fused(name: str) -> np.ndarray:
        return fuse([read(t, key, name) for t in teachers], weights, keep)

    return read_fused


def teacher_probabilities(teachers: Sequence[str], data: Any) -> list[float]:
    """The teachers' probabilities from `data` (`DataSettings`): its `teacher_weights`, else its
    roles' (checked against the teachers), else uniform."""
    check_roles(data.teacher_roles, len(teachers))
    weights = data.teacher_weights or (
        role_weights(data.teacher_roles) if data.teacher_roles else None
    )
    return normalized_weights(teachers, weights)
