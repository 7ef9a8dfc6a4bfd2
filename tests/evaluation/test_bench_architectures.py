"""`pipeline bench architectures --smoke`: each family trains and is scored at its checkpoints."""

from __future__ import annotations

import math

from evaluation.bench.architectures import ARCHITECTURES, build, main


def test_every_family_trains_a_few_steps_and_is_scored():
    rows = main(["--smoke"])
    assert [(r["arch"], r["step"]) for r in rows] == [(a, s) for a in ARCHITECTURES for s in (2, 4)]
    for row in rows:
        assert 0 < row["abs_rel"] < 5 and 0 <= row["delta1"] <= 1 and math.isfinite(row["loss"])
        assert row["cpu_s"] > 0


def test_the_default_width_gives_the_probes_sizes():
    sizes = {a: sum(p.numel() for p in build(a, 16, 168).parameters()) for a in ARCHITECTURES}
    assert all(0.5e6 < n < 1e6 for n in sizes.values()), sizes
