"""The world's ray caster: depth computed by hand, sky, cut-outs, and views of one camera.

Depth is z-depth (along the optical axis); hand-made scenes use flat materials so each check
is about geometry only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.world.camera import Camera
from pipeline.world.generate import make_scene
from pipeline.world.render import render
from pipeline.world.scene import Light, Scene
from pipeline.world.shapes import Box, Cylinder, Ground, Quad, Sphere
from pipeline.world.textures import Material

FLAT = Material()


def _scene(camera: Camera, *shapes, far: float = 1e4) -> Scene:
    return Scene(camera, Light(), tuple(shapes), far)


def _ground_depth(h: float, pitch_deg: float, y: np.ndarray, cy: float, fy: float):
    """z-depth of the ground under a camera `h` m up pitched `pitch_deg` down, at row centre y:
    the ray (a, b, 1) has world z component -(sin θ + b cos θ), so t = h / (sin θ + b cos θ)."""
    theta = math.radians(pitch_deg)
    denom = math.sin(theta) + (y - cy) / fy * math.cos(theta)
    return np.where(denom > 0, h / np.where(denom > 0, denom, 1.0), 0.0), denom > 0


def test_ground_depth_from_camera_height_and_pitch_and_sky_above_the_horizon():
    h, pitch = 1.7, 20.0
    cam = Camera.looking(41, 31, 60.0, (3.0, -2.0, h), yaw_deg=30.0, pitch_deg=-pitch)
    view = render(_scene(cam, Ground(FLAT)), 31, 41)
    expected, below = _ground_depth(h, pitch, np.arange(31) + 0.5, cam.cy, cam.fy)
    assert 0 < below.sum() < 31  # the horizon crosses the image: sky rows and ground rows
    np.testing.assert_allclose(view.depth, np.repeat(expected[:, None], 41, 1), rtol=1e-6)
    np.testing.assert_array_equal(view.valid, np.repeat(below[:, None], 41, 1))
    assert (view.depth[~view.valid] == 0).all()  # invalid depth is 0
    assert view.depth.dtype == np.float32 and view.rgb.dtype == np.uint8
    sky = view.rgb[~view.valid].astype(int)
    assert (sky[:, 2] > sky[:, 0]).all()  # sky is blue-ish, never the ground's grey


def test_hits_beyond_far_are_invalid():
    h, pitch = 1.5, 10.0
    cam = Camera.looking(20, 40, 50.0, (0.0, 0.0, h), pitch_deg=-pitch)
    view = render(_scene(cam, Ground(FLAT), far=12.0), 40, 20)
    expected, below = _ground_depth(h, pitch, np.arange(40) + 0.5, cam.cy, cam.fy)
    near = below & (expected <= 12.0)
    assert 0 < near.sum() < below.sum()
    np.testing.assert_array_equal(view.valid[:, 0], near)
    np.testing.assert_allclose(view.depth[near, 0], expected[near], rtol=1e-6)


def test_sphere_nearest_point_on_the_optical_axis():
    cam = Camera.looking(31, 31, 70.0, (1.0, 2.0, 1.5), yaw_deg=40, pitch_deg=10, roll_deg=5)
    forward = cam.matrix()[:, 2]
    distance, radius = 7.0, 1.5
    center = tuple(cam.origin() + distance * forward)
    view = render(_scene(cam, Sphere(FLAT, center, radius)), 31, 31)
    assert cam.cx == 15.5 and cam.cy == 15.5  # pixel (15, 15)'s centre is on the axis
    assert view.depth[15, 15] == pytest.approx(distance - radius, rel=1e-9)
    assert view.depth[view.valid].min() == view.depth[15, 15]  # the nearest point
    assert 0.03 < view.valid.mean() < 0.2 and not view.valid[0, 0]  # a disc of 12° radius


def test_sphere_depth_matches_the_textbook_quadratic_off_axis():
    cam = Camera.looking(24, 18, 60.0, (0.0, 0.0, 1.0), yaw_deg=-15, pitch_deg=-5)
    sphere = Sphere(FLAT, (1.0, 6.0, 1.2), 2.0)
    view = render(_scene(cam, sphere), 18, 24)
    o, c, r = cam.origin(), np.asarray(sphere.center), sphere.radius
    for i, j in [(9, 12), (4, 20), (14, 3), (2, 2)]:
        d = cam.matrix() @ np.array([(j + 0.5 - cam.cx) / cam.fx, (i + 0.5 - cam.cy) / cam.fy, 1])
        a, b, cc = d @ d, 2 * d @ (o - c), (o - c) @ (o - c) - r * r
        disc = b * b - 4 * a * cc
        if disc < 0:
            assert not view.valid[i, j]
        else:
            assert view.depth[i, j] == pytest.approx((-b - math.sqrt(disc)) / (2 * a), rel=1e-6)


def test_box_face_parallel_to_the_image_has_one_depth_not_one_distance():
    cam = Camera.looking(32, 24, 60.0, (0.0, 0.0, 1.0))  # looks north, level
    box = Box(FLAT, (0.0, 10.0, 1.0), (4.0, 2.0, 3.0))  # front face at y = 9
    view = render(_scene(cam, box), 24, 32)
    face = view.valid
    assert face.sum() > 50
    np.testing.assert_allclose(view.depth[face], 9.0, rtol=1e-12)


def test_pole_and_wire_depths():
    cam = Camera.looking(33, 33, 40.0, (0.0, 0.0, 1.5))
    pole = Cylinder(FLAT, (0.0, 20.0, 0.0), (0.0, 20.0, 6.0), 0.3)
    view = render(_scene(cam, pole), 33, 33)
    assert view.depth[16, 16] == pytest.approx(20.0 - 0.3, rel=1e-9)  # axis pixel: nearest point
    wire = Cylinder(FLAT, (-50.0, 30.0, 1.5), (50.0, 30.0, 1.5), 0.01)  # 2 cm at 30 m: < 1 px
    view = render(_scene(cam, wire), 33, 33)
    assert view.valid[16].all() and not view.valid[15].any() and not view.valid[17].any()
    assert view.depth[16, 16] == pytest.approx(30.0 - 0.01, rel=1e-9)


def test_cut_out_fence_shows_what_is_behind_through_its_gaps():
    cam = Camera.looking(60, 20, 50.0, (0.0, 0.0, 1.0))
    slats = Material(cutout="slats", cutout_scale=0.2, cutout_fill=0.5)
    fence = Quad(slats, (0.0, 5.0, 1.0), (3.0, 0.0, 0.0), (0.0, 0.0, 2.0))
    wall = Quad(FLAT, (0.0, 8.0, 1.0), (6.0, 0.0, 0.0), (0.0, 0.0, 3.0))
    view = render(_scene(cam, fence, wall), 20, 60)
    assert view.valid.all()
    x = (np.arange(60) + 0.5 - cam.cx) / cam.fx * 5.0  # where the centre rays cross the fence
    kept = np.mod(x / 0.2, 1.0) < 0.5
    np.testing.assert_allclose(view.depth[10], np.where(kept, 5.0, 8.0), rtol=1e-9)
    assert 0 < kept.sum() < 60


def test_a_native_resolution_view_is_the_crop_of_the_full_render():
    scene = make_scene(3, "train", 5, 60, 90)
    for samples in (1, 2):
        full = render(scene, 60, 90, samples=samples)
        x0, y0, x1, y1 = 13, 7, 53, 41
        tile = render(scene, y1 - y0, x1 - x0, box=(x0, y0, x1, y1), samples=samples)
        np.testing.assert_array_equal(tile.depth, full.depth[y0:y1, x0:x1])
        np.testing.assert_array_equal(tile.valid, full.valid[y0:y1, x0:x1])
        np.testing.assert_array_equal(tile.rgb, full.rgb[y0:y1, x0:x1])
    assert full.valid.mean() > 0.3 and len(np.unique(full.depth)) > 100


def test_a_view_at_three_times_the_resolution_samples_the_same_rays():
    scene = make_scene(3, "train", 6, 40, 60)
    base = render(scene, 40, 60, rgb=False)
    fine = render(scene, 120, 180, rgb=False)  # pixel centres 3i+1 coincide with native ones
    close = np.isclose(fine.depth[1::3, 1::3], base.depth, rtol=1e-9, atol=0)
    assert close.mean() > 0.995  # a ray exactly on an edge may fall either way after rounding
    assert (fine.valid[1::3, 1::3] == base.valid).mean() > 0.995


def test_lower_resolution_views_and_regions_reach_outside_the_frame():
    scene = make_scene(0, "test", 2, 60, 90)
    small = render(scene, 20, 30)
    assert small.rgb.shape == (20, 30, 3) and small.depth.shape == (20, 30)
    wide = render(scene, 40, 40, box=(-30, 0, 120, 60))  # beyond both sides of the image
    assert wide.depth.shape == (40, 40)
    depth_only = render(scene, 20, 30, rgb=False)
    assert depth_only.rgb is None
    np.testing.assert_array_equal(depth_only.depth, small.depth)
    with pytest.raises(ValueError, match="empty"):
        render(scene, 10, 10, box=(5, 5, 5, 9))


def test_bench_prints_a_markdown_row(capsys):
    from pipeline.bench.world_render import main

    result = main(["--images", "1", "--repeats", "1", "--height", "20", "--width", "30"])
    assert result["render_images_per_s_per_core"] > 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("| 20x30, samples 1, median of 1")


@pytest.mark.slow
def test_a_560_tile_of_a_photo_sized_image_is_its_crop():
    scene = make_scene(0, "train", 0)  # 1500 x 2250
    full = render(scene, 1500, 2250)
    assert 0.5 < full.valid.mean() < 1.0 and full.depth.max() <= scene.far
    box = (1337, 601, 1897, 1161)  # a plan tile: 560 native pixels
    tile = render(scene, 560, 560, box=box)
    np.testing.assert_array_equal(tile.depth, full.depth[601:1161, 1337:1897])
    np.testing.assert_array_equal(tile.rgb, full.rgb[601:1161, 1337:1897])
    small = render(scene, 518, 777, rgb=False)  # what a teacher at 518 px would be given
    assert small.depth.shape == (518, 777) and small.valid.mean() > 0.5
