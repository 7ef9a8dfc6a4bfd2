"""How a prediction is put on the ground truth's scale before it is scored (`--alignment`).

- `scale-shift` (default): least squares scale and shift in the prediction's space (disparity
  models against 1/GT, depth models against GT), Marigold's protocol for relative models;
- `scale`: least squares scale only, `a = Σ p·t / Σ p²` (no shift), fitted in the same space
  on the same pixels: a metric model whose scale is unknown (e.g. an unknown focal length);
- `none`: no fit, the prediction is taken as metric depth as it is (a metric model). Refused for
  a model whose output is relative (disparity, or affine-invariant depth).

Several may be given at once (`none,scale-shift`): the same predictions are scored with each, the
first being the directory's main result (`summary.json` `datasets`, `per_sample.csv`) and each
one recorded under `by_alignment` (and `per_sample.<alignment>.csv` for the others). Unset, a
metric model (output kind `metric_depth`) is scored `none,scale-shift`, any other `scale-shift`.

`solve` turns the sums of the fit's pixels into `(scale, shift, degenerate)` for each, so the
numpy protocol (`evaluation.protocol`) and the torch one (`evaluation.device_score`) share it.
"""

from __future__ import annotations

import numpy as np

ALIGNMENTS = ("scale-shift", "scale", "none")
DEFAULT_ALIGNMENT = "scale-shift"
RELATIVE_KINDS = {
    "disparity": "relative disparity",
    "depth": "affine-invariant (relative) depth",
}
"""Output kinds (`pipeline.labels.manifest.OUTPUT_KINDS`) that `none` cannot score."""


METRIC_DEFAULT = ("none", "scale-shift")
"""A metric model's alignments when `--alignment` is unset: as metres, then as the protocol."""


def alignments_for(given: str | None, output_kind: str | None) -> list[str]:
    """The alignments `--alignment` names (comma-separated, in order, each once), or its default
    for a model of `output_kind` (`METRIC_DEFAULT` for `metric_depth`, else the protocol's)."""
    if given is None or not given.strip():
        return list(METRIC_DEFAULT) if output_kind == "metric_depth" else [DEFAULT_ALIGNMENT]
    names = list(dict.fromkeys(part.strip() for part in given.split(",") if part.strip()))
    for name in names:
        if name not in ALIGNMENTS:
            raise ValueError(
                f"--alignment {name!r} is not one of {', '.join(ALIGNMENTS)} (several: "
                "comma-separated, e.g. none,scale-shift)"
            )
    return names


def solve_scale_shift(
    n: float, sp: float, st: float, spp: float, spt: float
) -> tuple[float, float, bool]:
    """Scale, shift and degeneracy from the sums of the 2×2 normal equations (n, Σp, Σt, Σp²,
    Σpt); a singular system gives (1, 0, True), never NaN."""
    det = n * spp - sp * sp
    if n < 2 or not np.isfinite(det) or abs(det) <= 1e-12 * max(1.0, n * spp):
        return 1.0, 0.0, True
    return float((n * spt - sp * st) / det), float((spp * st - sp * spt) / det), False


def solve_scale(n: float, spp: float, spt: float) -> tuple[float, float, bool]:
    """Least squares scale without shift, `Σpt / Σp²`; no pixel or an all-zero prediction gives
    (1, 0, True), never NaN."""
    if n < 1 or not np.isfinite(spp) or spp <= 0 or not np.isfinite(spt):
        return 1.0, 0.0, True
    return float(spt / spp), 0.0, False


def solve(
    alignment: str, n: float, sp: float, st: float, spp: float, spt: float
) -> tuple[float, float, bool]:
    """`(scale, shift, degenerate)` of `alignment` from the fit's sums (n, Σp, Σt, Σp², Σpt)."""
    if alignment == "scale-shift":
        return solve_scale_shift(n, sp, st, spp, spt)
    if alignment == "scale":
        return solve_scale(n, spp, spt)
    if alignment == "none":
        return 1.0, 0.0, False
    raise ValueError(f"--alignment {alignment!r} is not one of {', '.join(ALIGNMENTS)}")


def check_alignment(
    alignment: str, pred_space: str, output_kind: str | None = None, model: str | None = None
) -> None:
    """A known alignment, and `none` only for a prediction that can be metric depth: refused in
    one line for disparity predictions and for a model whose recorded output kind is relative."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"--alignment {alignment!r} is not one of {', '.join(ALIGNMENTS)}")
    if alignment != "none":
        return
    kind = output_kind if output_kind in RELATIVE_KINDS else None
    if kind is None and pred_space == "disparity":
        kind = "disparity"
    if kind is not None:
        who = f"model {model!r}" if model else "the model"
        raise ValueError(
            f"--alignment none takes the prediction as metric depth, but {who} outputs "
            f"{RELATIVE_KINDS[kind]} (output kind {kind!r}): use --alignment scale-shift "
            "(the standard protocol) or scale"
        )


def alignment_text(alignment: str, pred_space: str) -> str:
    """The `alignment` string a result records (the default's is the protocol's own words)."""
    if alignment == "scale-shift":
        return f"least squares scale and shift in {pred_space} space"
    if alignment == "scale":
        return f"least squares scale (no shift) in {pred_space} space"
    return "none: the prediction is taken as metric depth"
