"""`pipeline bench codecs --metric`: metric depth labels of the world, float16 codecs against the
log-depth candidate (`LogU16`), whose round trip keeps its stated relative error."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.bench.codecs import LogU16, bench_metric_one, main, world_depth_maps


@pytest.fixture(scope="module")
def world_depth() -> np.ndarray:
    (depth,) = world_depth_maps(1, 60, 80).values()
    return depth


@pytest.mark.parametrize("rel_error", [2.0**-11, 1e-4])
def test_log_u16_keeps_its_relative_error_and_the_sky(world_depth, rel_error):
    codec = LogU16(rel_error)
    assert np.isposinf(world_depth).any() and np.isfinite(world_depth).any()  # sky and surfaces
    out = codec.decode(codec.encode(world_depth), world_depth.shape)
    finite = np.isfinite(world_depth)
    assert np.array_equal(np.isposinf(out), ~finite)
    truth = world_depth[finite].astype(np.float64)
    rel = np.abs(out[finite] - truth) / truth
    assert rel.max() <= rel_error * (1 + 1e-3) + 1e-7  # float32 output rounding on top
    assert rel.max() > rel_error / 2  # the step is the stated one, not finer


def test_log_u16_keeps_nan_and_refuses_what_is_not_depth():
    codec = LogU16(1e-3)
    depth = np.array([[0.5, np.nan], [np.inf, 800.0]], dtype=np.float32)
    out = codec.decode(codec.encode(depth), depth.shape)
    assert np.isnan(out[0, 1]) and np.isposinf(out[1, 0])
    np.testing.assert_allclose(out[[0, 1], [0, 1]], [0.5, 800.0], rtol=1e-3)
    with pytest.raises(ValueError, match="positive"):
        codec.encode(np.array([[1.0, -2.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="spans"):
        LogU16(1e-5).encode(np.array([[1e-3, 1e3]], dtype=np.float32))


def test_a_row_reports_bytes_and_errors_over_finite_pixels(world_depth):
    row = bench_metric_one(LogU16(2.0**-12), world_depth, repeats=1)
    assert 0 < row["bytes_per_pixel"] < 2
    assert row["median_rel_error"] <= row["max_rel_error"] <= 2.0**-12 * 1.001


def test_the_metric_benchmark_prints_both_tables(capsys):
    main(["--metric", "--smoke"])
    out = capsys.readouterr().out
    assert "| codec (mean over maps) |" in out and "| map, codec |" in out
    for name in ("pcodec-f16", "log-u16 r=4.9e-04", "log-u16 r=2.4e-04"):
        assert f"| {name} (1 maps) |" in out
