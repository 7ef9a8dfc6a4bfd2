"""The crop plan: region and tile rules as properties over many image sizes, determinism, shards."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dataset.plan import (
    PlanParams,
    load_plan_shard,
    plan_hash,
    plan_image,
    plan_shard_bytes,
    tile_positions,
    uniform_int,
    views,
)

sizes = st.integers(min_value=64, max_value=4000)
overlaps = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9])
params_strategy = st.builds(
    PlanParams,
    seed=st.integers(0, 2**31),
    regions=st.integers(1, 4),
    min_overlap=overlaps,
)


def gaps(positions: list[int]) -> list[int]:
    return [b - a for a, b in zip(positions, positions[1:], strict=False)]


def even_positions(side: int, tile: int, n: int) -> list[int]:
    span = side - tile
    return [round_half_up(i * span, n - 1) for i in range(n)]


def round_half_up(num: int, den: int) -> int:
    return (2 * num + den) // (2 * den)


def check_region(region: dict, height: int, width: int, p: PlanParams) -> None:
    x0, y0, x1, y1 = region["box"]
    side = x1 - x0
    assert y1 - y0 == side, "regions are square"
    assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height, "region inside the image"
    short = min(height, width)
    if short < p.min_region:
        assert side == short
    else:
        assert p.min_region <= side <= short
    tiles = region["tiles"]
    if side <= p.tile:
        assert tiles == [region["box"]], "a small region is its own single tile"
        return
    for t in tiles:
        assert t[2] - t[0] == p.tile and t[3] - t[1] == p.tile, "tiles are tile x tile"
        assert x0 <= t[0] and y0 <= t[1] and t[2] <= x1 and t[3] <= y1, "tile inside region"
    check_grid(tiles, region["box"], p)


def check_grid(tiles: list[list[int]], box: list[int], p: PlanParams) -> None:
    x0, y0, x1, _ = box
    n = int(round(len(tiles) ** 0.5))
    assert n * n == len(tiles) and n >= 2
    xs = [t[0] - x0 for t in tiles[:n]]
    ys = [tiles[r * n][1] - y0 for r in range(n)]
    assert xs == ys, "same offsets on both axes"
    assert [t[0] - x0 for t in tiles] == xs * n, "row-major order"
    assert xs[0] == 0 and xs[-1] + p.tile == x1 - x0, "first at the start, last at the end"
    assert all(0 < g <= p.tile for g in gaps(xs)), "the union of tiles covers the region"
    assert all(p.tile - g >= p.min_overlap * p.tile for g in gaps(xs)), "minimum overlap kept"
    if n > 2:
        fewer = even_positions(x1 - x0, p.tile, n - 1)
        assert any(p.tile - g < p.min_overlap * p.tile for g in gaps(fewer)), "n is minimal"


@settings(max_examples=400, deadline=None)
@given(height=sizes, width=sizes, p=params_strategy, key=st.text(min_size=1, max_size=12))
def test_every_planned_region_has_the_plan_count_and_obeys_the_region_rules(
    height: int, width: int, p: PlanParams, key: str
) -> None:
    entry = plan_image(key, height, width, p)
    assert entry["size"] == [height, width]
    assert len(entry["regions"]) == p.regions
    for region in entry["regions"]:
        check_region(region, height, width, p)


@settings(max_examples=300, deadline=None)
@given(side=st.integers(561, 4000), min_overlap=overlaps, tile=st.sampled_from([560, 100, 37]))
def test_tile_positions_are_minimal_even_spacing(side: int, min_overlap: float, tile: int) -> None:
    positions = tile_positions(side, tile, min_overlap)
    n = len(positions)
    assert n >= 2
    assert positions == even_positions(side, tile, n)
    assert all(tile - g >= min_overlap * tile for g in gaps(positions))
    if n > 2:
        assert any(tile - g < min_overlap * tile for g in gaps(even_positions(side, tile, n - 1)))


def test_tile_positions_keep_the_overlap_and_round_half_up() -> None:
    assert tile_positions(560, 560, 0.25) == [0]
    assert tile_positions(100, 560, 0.25) == [0]
    assert tile_positions(561, 560, 0.25) == [0, 1]
    assert tile_positions(980, 560, 0.25) == [0, 420]  # overlap exactly 140 = 0.25 * 560
    assert tile_positions(981, 560, 0.25) == [0, 211, 421]  # 210.5 rounds half up
    assert tile_positions(2000, 560, 0.25) == [0, 360, 720, 1080, 1440]


def test_region_equal_to_tile_is_one_tile() -> None:
    p = PlanParams(min_region=560)
    entry = plan_image("k", 560, 800, p)
    for region in entry["regions"]:
        assert region["box"][2] - region["box"][0] == 560
        assert region["tiles"] == [region["box"]]


def test_small_image_region_is_the_short_side() -> None:
    entry = plan_image("k", 300, 451, PlanParams())
    for region in entry["regions"]:
        assert region["box"][1] == 0 and region["box"][3] == 300
        assert region["tiles"] == [region["box"]]


def test_a_plan_is_a_function_of_key_size_and_params_alone() -> None:
    p = PlanParams()
    a = plan_image("sa_1", 1500, 2250, p)
    assert a == plan_image("sa_1", 1500, 2250, PlanParams())
    assert a != plan_image("sa_2", 1500, 2250, p)
    assert a != plan_image("sa_1", 1500, 2250, PlanParams(seed=1))
    assert a != plan_image("sa_1", 1501, 2250, p)
    assert a["regions"][0] != a["regions"][1]


def independent_draw(lo: int, hi: int, text: str) -> int:
    u = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return lo + (u * (hi - lo + 1) >> 64)


def test_plan_draws_follow_the_documented_hash_scheme() -> None:
    """Draws come from sha256("{seed}|{key}|{H}x{W}|{k}|{field}"), never a numpy generator."""
    entry = plan_image("sa_1", 1500, 2250, PlanParams(seed=7))
    for k, region in enumerate(entry["regions"]):
        side = independent_draw(644, 1500, f"7|sa_1|1500x2250|{k}|s")
        x0 = independent_draw(0, 2250 - side, f"7|sa_1|1500x2250|{k}|x")
        y0 = independent_draw(0, 1500 - side, f"7|sa_1|1500x2250|{k}|y")
        assert region["box"] == [x0, y0, x0 + side, y0 + side]


def test_the_plan_of_a_known_image_never_changes() -> None:
    """These values must never change, or the plans of existing datasets would."""
    entry = plan_image("sa_1", 1500, 2250, PlanParams())
    assert [r["box"] for r in entry["regions"]] == [[523, 114, 1730, 1321], [112, 52, 1063, 1003]]


def test_uniform_int_covers_range() -> None:
    draws = {uniform_int(3, 7, "t", i) for i in range(200)}
    assert draws == {3, 4, 5, 6, 7}
    assert uniform_int(5, 5, "x") == 5
    with pytest.raises(ValueError):
        uniform_int(6, 5, "x")


def test_views_names_and_boxes() -> None:
    entry = plan_image("k", 1500, 2250, PlanParams(regions=2))
    names = [name for name, _ in views(entry)]
    for k, region in enumerate(entry["regions"]):
        assert f"r{k}.sc" in names
        tiles = [box for name, box in views(entry) if name.startswith(f"r{k}.t")]
        assert tiles == region["tiles"]
        assert names.index(f"r{k}.sc") < names.index(f"r{k}.t0")
    assert dict(views(entry))["r1.t0"] == entry["regions"][1]["tiles"][0]


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"regions": 0}, "--regions"),
        ({"min_overlap": 1.0}, "--min-overlap"),
        ({"min_overlap": -0.1}, "--min-overlap"),
        ({"min_overlap": 0.9999}, "--min-overlap"),
        ({"seed": 1.5}, "--seed"),
    ],
)
def test_params_validation_names_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        PlanParams(**kwargs)


def test_plan_shard_roundtrip_keeps_order(tmp_path) -> None:
    p = PlanParams()
    plans = {k: plan_image(k, 800, 1200, p) for k in ["z", "a", "m"]}
    data = plan_shard_bytes(plans)
    assert data == plan_shard_bytes(dict(plans))
    path = tmp_path / "000000.json"
    path.write_bytes(data)
    loaded = load_plan_shard(path)
    assert list(loaded) == ["z", "a", "m"]
    assert loaded == json.loads(data)


def test_load_plan_shard_rejects_bad_files(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": {"size": [1, 1], "regions": []}, "a": {}}')
    with pytest.raises(ValueError, match="twice"):
        load_plan_shard(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_plan_shard(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_plan_shard(bad)


def test_plan_hash_depends_on_shards_and_params() -> None:
    p = PlanParams()
    h = plan_hash(["a", "b"], p)
    assert h == plan_hash(["a", "b"], PlanParams())
    assert h != plan_hash(["b", "a"], p)
    assert h != plan_hash(["a", "b"], PlanParams(seed=3))
