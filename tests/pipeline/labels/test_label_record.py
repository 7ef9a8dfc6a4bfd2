"""Per-key records: map statistics, flags, key and map-name rules."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.labels.record import (
    build_record,
    check_key,
    check_keys,
    check_map_name,
    map_kind,
    map_stats,
    sorted_map_names,
)


def test_map_stats_counts_and_finite_summary():
    arr = np.array([[1.0, 2.0, np.nan], [np.inf, 1e5, 3.0]], np.float32)
    stats = map_stats(arr, np.float16)
    assert stats["shape"] == [2, 3] and stats["nan"] == 1 and stats["inf"] == 1
    assert stats["min"] == 1.0 and stats["max"] == 1e5 and stats["clipped"] == 1
    assert stats["mean"] == pytest.approx((1 + 2 + 1e5 + 3) / 4)
    assert not stats["flat"]
    assert map_stats(arr, np.float32)["clipped"] == 0


def test_flat_and_empty_maps():
    assert map_stats(np.full((4, 4), 3.25, np.float32))["flat"]
    assert map_stats(np.zeros((4, 4), np.float32))["flat"]
    nothing = map_stats(np.full((2, 2), np.nan, np.float32))
    assert nothing["flat"] and nothing["min"] is None and nothing["nan"] == 4
    ramp = np.linspace(10, 10.01, 16, dtype=np.float32).reshape(4, 4)
    assert not map_stats(ramp)["flat"]


def test_underflow_is_counted_not_flagged():
    arr = np.array([[1e-6, 0.0, 1.0, 2.0]], np.float32)
    stats = map_stats(arr, np.float16)
    assert stats["underflow"] == 1
    assert build_record({"full": stats})["flags"] == []


def test_build_record_flags_error_and_extras():
    bad = map_stats(np.array([[np.nan, 1.0], [2.0, 1e9]], np.float32), np.float16)
    flat = map_stats(np.ones((2, 2), np.float32))
    record = build_record({"r0.sc": bad, "r0.t0": flat}, error="partial", extra={"kind": "depth"})
    assert record["flags"] == ["clipped", "error", "flat", "nan"]
    assert record["kind"] == "depth" and record["error"] == "partial"
    assert list(record["maps"]) == ["r0.sc", "r0.t0"]
    with pytest.raises(ValueError, match="reserved"):
        build_record({}, extra={"flags": []})


@pytest.mark.parametrize("name", ["full", "r0.sc", "r12.sc", "r0.t0", "r3.t15"])
def test_full_region_and_tile_map_names_are_accepted(name):
    assert check_map_name(name) == name


@pytest.mark.parametrize("name", ["", "r.sc", "r-1.sc", "r01.sc", "r0.t", "r0.t01", "full.x", "r0"])
def test_malformed_or_zero_padded_map_names_are_refused(name):
    with pytest.raises(ValueError, match="map name"):
        check_map_name(name)


def test_canonical_map_order_and_kinds():
    names = ["r1.t0", "r0.t10", "r0.sc", "r0.t2", "full", "r1.sc", "r10.sc"]
    assert sorted_map_names(names) == [
        "full",
        "r0.sc",
        "r0.t2",
        "r0.t10",
        "r1.sc",
        "r1.t0",
        "r10.sc",
    ]
    assert [map_kind(n) for n in ("full", "r0.sc", "r2.t3")] == ["full", "sc", "tile"]


@pytest.mark.parametrize("key", ["sa_1", "000123", "img-7", "A" * 80])
def test_keys_of_letters_digits_dashes_up_to_80_chars_are_accepted(key):
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "a.b", "a/b", "_x", "__meta__", "a b", "A" * 81, 7])
def test_empty_dotted_slashed_hidden_spaced_or_long_keys_are_refused(key):
    with pytest.raises(ValueError, match="key"):
        check_key(key)


def test_duplicate_keys_are_refused():
    with pytest.raises(ValueError, match="unique; repeated: \\['a'\\]"):
        check_keys(["a", "b", "a"])
