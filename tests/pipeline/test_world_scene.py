"""World scenes: deterministic generation, what they contain, and the exact JSON round trip."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from pipeline.world.generate import Draws, make_scene
from pipeline.world.render import render
from pipeline.world.scene import Scene
from pipeline.world.shapes import shape_from_json
from pipeline.world.textures import Material


def test_draws_come_from_sha256_alone():
    """Pinned values: the stream depends on nothing but the names (no numpy generator)."""
    draws = Draws("a", 1)
    assert draws.uniform() == 0.37457645795761807
    assert Draws("a", 1).integer(0, 10**9) == 374576458
    assert Draws("a", 2).uniform() != 0.37457645795761807


def test_same_seed_and_index_give_the_same_scene_and_bytes():
    a, b = make_scene(4, "train", 2, 40, 60), make_scene(4, "train", 2, 40, 60)
    assert a == b and a.to_json() == b.to_json()
    va, vb = render(a, 40, 60), render(b, 40, 60)
    assert va.rgb.tobytes() == vb.rgb.tobytes() and va.depth.tobytes() == vb.depth.tobytes()


def test_index_split_and_seed_each_change_the_scene():
    base = make_scene(4, "train", 2).to_json()
    assert make_scene(4, "train", 3).to_json() != base
    assert make_scene(4, "test", 2).to_json() != base
    assert make_scene(5, "train", 2).to_json() != base
    with pytest.raises(ValueError, match="split"):
        make_scene(0, "val", 0)


def test_scenes_hold_every_kind_fine_structure_and_cut_outs():
    kinds: Counter[str] = Counter()
    thin = cutouts = 0
    for index in range(6):
        scene = make_scene(0, "train", index)
        assert (scene.camera.height, scene.camera.width) == (1500, 2250)  # SA-1B-like default
        assert scene.shapes[0].kind == "ground"
        kinds.update(s.kind for s in scene.shapes)
        thin += sum(s.kind == "cylinder" and s.radius < 0.07 for s in scene.shapes)
        cutouts += sum(s.has_cutout for s in scene.shapes)
        assert 25 <= len(scene.shapes) <= 110  # a moderate count: every ray meets each shape
    assert set(kinds) == {"ground", "sphere", "box", "cylinder", "quad"}
    assert thin >= 6 and cutouts >= 6  # poles, wires, railings; fences and foliage


def test_scene_json_round_trips_exactly():
    scene = make_scene(2, "test", 7, 30, 45)
    text = json.dumps(scene.to_json())
    again = Scene.from_json(json.loads(text))
    assert again == scene
    assert json.dumps(again.to_json()) == text
    a, b = render(scene, 30, 45), render(again, 30, 45)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)


def test_bad_scene_json_is_refused_with_the_reason():
    obj = make_scene(0, "train", 0, 20, 30).to_json()
    with pytest.raises(ValueError, match="format"):
        Scene.from_json({**obj, "format": "other/9"})
    with pytest.raises(ValueError, match="unknown shape kind 'torus'"):
        shape_from_json({"kind": "torus"})
    with pytest.raises(ValueError, match="unknown pattern"):
        Material(pattern="plaid")
