"""Procedural scenes: `make_scene(seed, split, index)` is a pure function of its arguments.

Every random number comes from SHA-256 of a string naming the draw (as the crop plan's do), so a
scene is the same on any machine and with any numpy version; train and test splits of one seed
never share a scene. `GENERATOR` names this recipe: change it whenever a change here changes
the scenes, so resumed renders never mix two recipes.

What a scene holds, chosen so that the paper's effects can exist in it:

- a camera 1.2-10 m above a textured ground (checker tiles, stripes, noise), pitched from 22°
  down to 4° up, slightly rolled, 50-80° horizontal field of view: ground in perspective from a
  metre away to the horizon, where haze meets the sky (depth there is invalid beyond `far`);
- buildings (large boxes) and boards (quads) far away, objects of many sizes (spheres, boxes,
  cylinders of 0.3-5 m) at 2-80 m, and small ones (5-30 cm) near the camera: occlusion
  boundaries at every depth and scale;
- structure thinner than a teacher sees at its input resolution (a pixel of a 2250-px-wide
  image downsized to 518 px covers 4.3 native pixels): poles 4-12 cm thick, wires of 1-4 cm
  strung between them, fences of slats or wire mesh (cut-out quads), trees whose crowns are
  cut-out spheres of leaves, hedges of cut-out foliage cards, railings;
- a sun with sky light, and a sky with clouds.
"""

from __future__ import annotations

import colorsys
import hashlib
import math

from pipeline.world.camera import Camera
from pipeline.world.scene import Light, Scene
from pipeline.world.shapes import Box, Cylinder, Ground, Quad, Shape, Sphere
from pipeline.world.textures import Material

GENERATOR = "pipeline.world.generate/1"
SPLITS = ("train", "test")
DEFAULT_HEIGHT, DEFAULT_WIDTH = 1500, 2250  # SA-1B-like photo size


class Draws:
    """A stream of deterministic random numbers: draw n is SHA-256 of `"names|n"`."""

    def __init__(self, *names: object) -> None:
        self.prefix = "|".join(str(n) for n in names)
        self.count = 0

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> float:
        digest = hashlib.sha256(f"{self.prefix}|{self.count}".encode()).digest()
        self.count += 1
        return lo + (hi - lo) * (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)

    def log_uniform(self, lo: float, hi: float) -> float:
        return math.exp(self.uniform(math.log(lo), math.log(hi)))

    def integer(self, lo: int, hi: int) -> int:
        """Uniform in `[lo, hi]`, both included."""
        return min(hi, lo + int(self.uniform() * (hi - lo + 1)))

    def chance(self, p: float) -> bool:
        return self.uniform() < p

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]

    def colour(self, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]):
        """A linear RGB colour from HSV ranges (hue in turns)."""
        h = self.uniform(*hue) % 1.0
        rgb = colorsys.hsv_to_rgb(h, self.uniform(*sat), self.uniform(*val))
        return tuple(round(c, 6) for c in rgb)


PALETTES = {  # (hue, saturation, value) ranges
    "ground": ((0.05, 0.35), (0.2, 0.7), (0.15, 0.6)),
    "stone": ((0.0, 1.0), (0.0, 0.25), (0.2, 0.8)),
    "vivid": ((0.0, 1.0), (0.4, 0.95), (0.25, 0.95)),
    "leaf": ((0.18, 0.4), (0.4, 0.9), (0.1, 0.5)),
    "wood": ((0.05, 0.12), (0.3, 0.7), (0.1, 0.4)),
    "metal": ((0.5, 0.7), (0.0, 0.2), (0.05, 0.4)),
}


def _material(draws: Draws, palette: str, patterns=("flat", "checker", "stripes", "noise"), **kw):
    """A material with colours from `palette`, one of `patterns`, its scale log-uniform."""
    scale = kw.pop("scale", None) or draws.log_uniform(0.05, 2.0)
    return Material(
        pattern=draws.choice(patterns),
        colour_a=draws.colour(*PALETTES[palette]),
        colour_b=draws.colour(*PALETTES[palette]),
        scale=round(scale, 6),
        angle_deg=round(draws.uniform(0, 180), 3),
        grain=round(draws.uniform(0.1, 0.5), 4),
        grain_scale=round(draws.log_uniform(0.01, 0.1), 6),
        seed=draws.integer(0, 1 << 30),
        **kw,
    )


def _leaves(draws: Draws, scale: tuple[float, float], fill: tuple[float, float]) -> Material:
    """A leaf material cut out in holes: its cut-out scale and fill drawn first, then the rest."""
    cutout = {"cutout_scale": draws.uniform(*scale), "cutout_fill": draws.uniform(*fill)}
    return _material(draws, "leaf", ("noise",), cutout="leaves", **cutout)


class _Placer:
    """Ground points in the camera's view, at chosen distances (metres, horizontal)."""

    def __init__(self, draws: Draws, yaw_deg: float, hfov_deg: float) -> None:
        self.draws, self.yaw, self.half = draws, math.radians(yaw_deg), math.radians(hfov_deg) / 2

    def spot(self, lo: float, hi: float, spread: float = 1.15) -> tuple[float, float, float]:
        """`(x, y, bearing)` at a log-uniform distance in `[lo, hi]` inside the field of view."""
        r = self.draws.log_uniform(lo, hi)
        bearing = self.yaw + self.draws.uniform(-spread, spread) * self.half
        return -r * math.sin(bearing), r * math.cos(bearing), bearing


def make_camera(draws: Draws, height: int, width: int) -> tuple[Camera, float, float]:
    """A camera (and its yaw and field of view, for placing things in view)."""
    hfov = draws.uniform(50, 80)
    z = draws.uniform(1.2, 2.2) if draws.chance(0.75) else draws.uniform(2.5, 10.0)
    yaw, pitch, roll = draws.uniform(0, 360), draws.uniform(-22, 4), draws.uniform(-4, 4)
    return Camera.looking(width, height, hfov, (0.0, 0.0, z), yaw, pitch, roll), yaw, hfov


def make_light(draws: Draws) -> Light:
    elevation, azimuth = math.radians(draws.uniform(10, 70)), math.radians(draws.uniform(0, 360))
    direction = (
        math.cos(elevation) * math.sin(azimuth),
        math.cos(elevation) * math.cos(azimuth),
        math.sin(elevation),
    )
    sun = draws.uniform(0.8, 1.3)
    ambient = draws.uniform(0.2, 0.45)
    return Light(
        direction=direction,
        sun=(sun, sun * 0.95, sun * draws.uniform(0.75, 0.95)),
        ambient=(ambient * 0.85, ambient * 0.92, ambient),
        sky_zenith=draws.colour((0.55, 0.65), (0.3, 0.8), (0.5, 0.9)),
        sky_horizon=draws.colour((0.5, 0.65), (0.05, 0.3), (0.75, 0.95)),
        clouds=round(draws.uniform(0.0, 0.8), 4) if draws.chance(0.7) else 0.0,
        cloud_scale=round(draws.uniform(0.2, 1.0), 4),
        cloud_seed=draws.integer(0, 1 << 30),
    )


def objects(draws: Draws, place: _Placer) -> list[Shape]:
    """Spheres, boxes and cylinders of 0.3-5 m at 2-80 m, and 5-30 cm ones near the camera."""
    out: list[Shape] = []
    for _ in range(draws.integer(8, 18)):
        size = draws.log_uniform(0.3, 5.0)
        x, y, _b = place.spot(max(2.0, 1.5 * size), 80.0)
        kind = draws.choice(("sphere", "box", "cylinder"))
        out.append(_solid(draws, kind, x, y, size, "vivid" if draws.chance(0.6) else "stone"))
    for _ in range(draws.integer(4, 12)):
        size = draws.log_uniform(0.05, 0.3)
        x, y, _b = place.spot(1.5, 12.0)
        out.append(_solid(draws, draws.choice(("sphere", "box")), x, y, size, "stone"))
    for _ in range(draws.integer(0, 4)):  # buildings
        w, depth, h = draws.uniform(8, 40), draws.uniform(8, 30), draws.uniform(5, 30)
        x, y, _b = place.spot(30.0 + w, 200.0, spread=1.3)
        mat = _material(draws, "stone", ("checker", "stripes", "noise"), scale=draws.uniform(1, 4))
        out.append(Box(mat, (x, y, h / 2), (w, depth, h), draws.uniform(0, 90)))
    for _ in range(draws.integer(0, 2)):  # boards
        w, h = draws.uniform(2, 12), draws.uniform(1.5, 6)
        x, y, b = place.spot(8.0, 60.0)
        out.append(_upright_quad(draws, x, y, b, w, h, lift=draws.uniform(0, 3)))
    return out


def _solid(draws: Draws, kind: str, x: float, y: float, size: float, palette: str) -> Shape:
    mat = _material(draws, palette, scale=size * draws.uniform(0.1, 0.6))
    if kind == "sphere":
        r = size / 2
        lift = draws.uniform(0.2, 2.0) * size if draws.chance(0.2) else 0.0
        return Sphere(mat, (x, y, r + lift), r)
    if kind == "box":
        sx, sy, sz = (size * draws.uniform(0.4, 1.0) for _ in range(3))
        return Box(mat, (x, y, sz / 2), (sx, sy, sz), draws.uniform(0, 90))
    r = size * draws.uniform(0.1, 0.5)
    return Cylinder(mat, (x, y, 0.0), (x, y, size * draws.uniform(0.5, 1.5)), r)


def _upright_quad(draws: Draws, x, y, bearing, w, h, lift=0.0, material=None) -> Quad:
    """A vertical rectangle `w` x `h` standing at (x, y), turned up to 60° from facing the
    camera."""
    turn = bearing + draws.uniform(-1.05, 1.05)
    half_u = (w / 2 * math.cos(turn), w / 2 * math.sin(turn), 0.0)
    mat = material or _material(draws, "vivid", ("checker", "stripes", "noise"))
    return Quad(mat, (x, y, lift + h / 2), half_u, (0.0, 0.0, h / 2))


def pole_line(draws: Draws, place: _Placer) -> list[Shape]:
    """3-6 poles (4-12 cm thick, 5-9 m tall) in a line, 1-3 wires (1-4 cm) between tops."""
    x, y, _b = place.spot(4.0, 30.0)
    heading = draws.uniform(0, 2 * math.pi)
    spacing, height = draws.uniform(8, 25), draws.uniform(5, 9)
    pole_mat = _material(draws, draws.choice(("wood", "metal")), ("flat", "noise", "stripes"))
    wire_mat = _material(draws, "metal", ("flat",))
    tops = []
    out: list[Shape] = []
    for k in range(draws.integer(3, 6)):
        px, py = x + k * spacing * math.cos(heading), y + k * spacing * math.sin(heading)
        if math.hypot(px, py) < 1.0:
            continue
        out.append(Cylinder(pole_mat, (px, py, 0.0), (px, py, height), draws.uniform(0.02, 0.06)))
        tops.append((px, py))
    offsets = [draws.uniform(-0.6, 0.0) for _ in range(draws.integer(1, 3))]
    radius = draws.uniform(0.005, 0.02)
    for (ax, ay), (bx, by) in zip(tops, tops[1:], strict=False):
        for dz in offsets:
            out.append(Cylinder(wire_mat, (ax, ay, height + dz), (bx, by, height + dz), radius))
    return out


def fences(draws: Draws, place: _Placer) -> list[Shape]:
    """0-2 fences (slats or wire mesh) with posts, and 0-3 railings."""
    out: list[Shape] = []
    for _ in range(draws.integer(0, 2)):
        length, height = draws.uniform(4, 20), draws.uniform(0.8, 2.0)
        x, y, b = place.spot(3.0, 30.0)
        slats = draws.chance(0.5)
        mat = _material(
            draws,
            "wood" if slats else "metal",
            ("flat", "noise"),
            cutout="slats" if slats else "grid",
            cutout_scale=draws.uniform(0.1, 0.3) if slats else draws.uniform(0.04, 0.12),
            cutout_fill=draws.uniform(0.3, 0.7) if slats else draws.uniform(0.08, 0.2),
        )
        quad = _upright_quad(draws, x, y, b, length, height, material=mat)
        out.append(quad)
        for s in (-1, 1):
            px, py = x + s * quad.half_u[0], y + s * quad.half_u[1]
            out.append(Cylinder(mat, (px, py, 0.0), (px, py, height * 1.1), 0.04))
    for _ in range(draws.integer(0, 3)):
        x, y, b = place.spot(2.5, 20.0)
        turn, half = b + draws.uniform(0.5, 2.6), draws.uniform(1.5, 5)
        dx, dy, z = half * math.cos(turn), half * math.sin(turn), draws.uniform(0.6, 1.2)
        mat = _material(draws, "metal", ("flat",))
        radius = draws.uniform(0.01, 0.03)
        out.append(Cylinder(mat, (x - dx, y - dy, z), (x + dx, y + dy, z), radius))
    return out


def vegetation(draws: Draws, place: _Placer) -> list[Shape]:
    """1-5 trees (trunk and a crown of cut-out leaves) and 0-4 hedges of foliage cards."""
    out: list[Shape] = []
    for _ in range(draws.integer(1, 5)):
        crown = draws.uniform(1.0, 4.0)
        x, y, _b = place.spot(3.0 + crown, 70.0)
        trunk = draws.uniform(1.5, 6.0)
        bark = _material(draws, "wood", ("noise", "stripes"))
        radius = crown * draws.uniform(0.05, 0.1)
        out.append(Cylinder(bark, (x, y, 0.0), (x, y, trunk + crown), radius))
        for k in range(draws.integer(1, 2)):
            leaves = _leaves(draws, (0.08, 0.4), (0.35, 0.65))
            r = crown * (1.0 - 0.35 * k)
            out.append(Sphere(leaves, (x, y, trunk + crown), r))
    for _ in range(draws.integer(0, 4)):
        x, y, b = place.spot(3.0, 40.0)
        leaves = _leaves(draws, (0.05, 0.2), (0.4, 0.7))
        w, h = draws.uniform(1.5, 8), draws.uniform(0.5, 2.5)
        out.append(_upright_quad(draws, x, y, b, w, h, material=leaves))
    return out


def make_scene(
    seed: int, split: str, index: int, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH
) -> Scene:
    """Scene `index` of split `split` under `seed`, for a `height` x `width` native image."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if index < 0:
        raise ValueError(f"image index must be ≥ 0, got {index}")
    draws = Draws("pipeline.world", GENERATOR, seed, split, index)
    camera, yaw, hfov = make_camera(draws, height, width)
    light = make_light(draws)
    far = round(draws.uniform(150, 400), 3)
    place = _Placer(draws, yaw, hfov)
    ground_mat = _material(
        draws, "ground", ("checker", "stripes", "noise"), scale=draws.log_uniform(0.3, 4.0)
    )
    shapes: list[Shape] = [Ground(ground_mat, 0.0)]
    shapes += objects(draws, place)
    if draws.chance(0.7):
        shapes += pole_line(draws, place)
    shapes += fences(draws, place)
    shapes += vegetation(draws, place)
    return Scene(camera, light, tuple(shapes), far)
