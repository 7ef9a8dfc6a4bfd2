"""Ray casting of a world scene: RGB, exact z-depth and validity of any view of its camera.

`render(scene, height, width, box)` draws the window `box = (x0, y0, x1, y1)` of the native image
plane (native pixel coordinates, half-open; default the whole image) at `height` x `width`
pixels: a crop of the camera, resampled. Output pixel `(i, j)` is the ray through
`(x0 + (j + 0.5) * (x1 - x0) / width, y0 + (i + 0.5) * (y1 - y0) / height)`, so at native
resolution (`width == x1 - x0`, `height == y1 - y0`) a view is exactly the crop of the full render
(depth, mask and RGB, bit for bit), and a view at another resolution is what a camera with
bigger or smaller pixels would see.

Depth is the exact z-depth (metres along the optical axis) of the surface the ray through the
pixel CENTRE hits first; 0 and invalid where that ray hits nothing, or hits beyond `scene.far`.
With `samples = k > 1` the colour is the mean of k x k rays spread over the pixel (anti-aliased
edges and sub-pixel wires), while depth and mask still come from the centre ray alone: depth is
never averaged across an edge.

Cost: every ray is tested against every shape whose projected bounding rectangle covers it
(a conservative cull, so it never changes a result), in blocks of rows that bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.world.camera import sample_positions
from pipeline.world.scene import Light, Scene
from pipeline.world.shapes import INF, Arrays, Shape
from pipeline.world.textures import fbm

BLOCK_PIXELS = 1 << 16
"""Rays traced together: float64 temporaries of a block stay in cache-sized arrays."""
GAMMA = 1 / 2.2


@dataclass
class View:
    """One rendered view. `depth` is float32 z-depth in metres, 0 where `valid` is False."""

    rgb: np.ndarray | None
    """uint8 `[H, W, 3]` (None when rendered with `rgb=False`)."""
    depth: np.ndarray
    valid: np.ndarray
    """bool `[H, W]`: False for sky, for rays that hit nothing and for hits beyond `far`."""


@dataclass(frozen=True)
class _Prepared:
    """A scene's shapes with their projected bounds (shapes wholly behind the camera dropped)."""

    scene: Scene
    shapes: tuple[tuple[int, Shape, tuple], ...]


def prepare(scene: Scene) -> _Prepared:
    """Project every shape's bounding hull once per render (see `Camera.pixel_bounds`)."""
    kept = []
    for k, shape in enumerate(scene.shapes):
        bound = scene.camera.pixel_bounds(shape.corners())
        if bound is not None:
            kept.append((k, shape, bound))
    return _Prepared(scene, tuple(kept))


def render(
    scene: Scene,
    height: int,
    width: int,
    box: tuple[float, float, float, float] | None = None,
    samples: int = 1,
    rgb: bool = True,
) -> View:
    """Render the `box` window of `scene`'s image plane at `height` x `width` (module docstring).

    `box` defaults to the native image `(0, 0, camera.width, camera.height)`; it may reach
    outside it (the camera sees beyond its frame). `rgb=False` skips shading (depth and mask
    only, several times faster).
    """
    cam = scene.camera
    x0, y0, x1, y1 = (0, 0, cam.width, cam.height) if box is None else box
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {box} is empty: need x0 < x1 and y0 < y1 (half-open pixels)")
    if height < 1 or width < 1 or samples < 1:
        raise ValueError(f"height, width and samples must be ≥ 1, got {height}, {width}, {samples}")
    prep = prepare(scene)
    xs, ys = sample_positions(x0, x1, width), sample_positions(y0, y1, height)
    pixel = 0.5 * ((x1 - x0) / width / cam.fx + (y1 - y0) / height / cam.fy)  # radians
    depth = np.zeros((height, width), np.float32)
    valid = np.zeros((height, width), bool)
    out = np.zeros((height, width, 3), np.uint8) if rgb else None
    step = max(1, BLOCK_PIXELS // width)
    for r0 in range(0, height, step):
        rows = slice(r0, min(r0 + step, height))
        hits = trace(prep, xs, ys[rows])
        valid[rows] = hits.ids >= 0
        depth[rows] = np.where(hits.ids >= 0, hits.t, 0.0)
        if out is not None:
            colour = _block_colour(prep, (x0, x1, width), (y0, y1, height), rows, samples, pixel)
            if colour is None:
                colour = shade(prep, hits, pixel)
            out[rows] = encode_srgb(colour)
    return View(out, depth, valid)


def _block_colour(prep, xspec, yspec, rows: slice, samples: int, pixel: float):
    """Mean linear colour of the k x k sub-pixel rays of a block (None when k = 1)."""
    if samples == 1:
        return None
    total = None
    for a in range(samples):
        ys = sample_positions(*yspec, offset=(a + 0.5) / samples)[rows]
        for b in range(samples):
            xs = sample_positions(*xspec, offset=(b + 0.5) / samples)
            colour = shade(prep, trace(prep, xs, ys), pixel / samples)
            total = colour if total is None else total + colour
    return total / samples**2


@dataclass(frozen=True)
class Traced:
    """The nearest hits of a block of rays."""

    t: np.ndarray
    """z-depth of the nearest hit, inf where none (sky, or beyond `far`)."""
    ids: np.ndarray
    """Index in `scene.shapes` of the shape hit, -1 where none."""
    d: Arrays
    """World ray directions (camera-frame z component 1)."""
    windows: tuple[tuple[int, Shape, tuple[slice, slice]], ...]
    """The shapes tested and the block window each was tested in (its projected bounds)."""


def _window(bound: tuple, xs: np.ndarray, ys: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns of a block whose rays fall inside a shape's projected bounds."""
    x_lo, x_hi, y_lo, y_hi = bound
    c0, c1 = np.searchsorted(xs, x_lo, "left"), np.searchsorted(xs, x_hi, "right")
    r0, r1 = np.searchsorted(ys, y_lo, "left"), np.searchsorted(ys, y_hi, "right")
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


def trace(prep: _Prepared, xs: np.ndarray, ys: np.ndarray) -> Traced:
    """Nearest hits of the rays through `(xs[j], ys[i])` (see `Traced`)."""
    cam = prep.scene.camera
    d = cam.directions(xs, ys)
    o = cam.origin()
    t_best = np.full(d[0].shape, INF)
    ids = np.full(d[0].shape, -1, np.int32)
    windows = []
    for k, shape, bound in prep.shapes:
        win = _window(bound, xs, ys)
        if win is None:
            continue
        windows.append((k, shape, win))
        t = first_hit(shape, o, tuple(c[win] for c in d))
        best, hit = t_best[win], ids[win]  # views: written in place
        better = t < best
        best[better] = t[better]
        hit[better] = k
    far = t_best > prep.scene.far
    ids[far] = -1
    t_best[far] = INF
    return Traced(t_best, ids, d, tuple(windows))


def first_hit(shape: Shape, o: np.ndarray, d: Arrays) -> np.ndarray:
    """z-depth of each ray's first hit on `shape` that its cut-out keeps (inf: none)."""
    candidates = shape.hits(o, d)
    if not shape.has_cutout:
        return candidates[0]
    out = np.full(d[0].shape, INF)
    todo = np.ones(d[0].shape, bool)
    for cand in candidates:
        idx = np.nonzero(todo & np.isfinite(cand))
        if idx[0].size == 0:
            continue
        tc = cand[idx]
        dk = tuple(c[idx] for c in d)
        _n, u, v = shape.surface(tuple(o[k] + tc * dk[k] for k in range(3)), dk)
        keep = shape.material.keeps(u, v)
        chosen = tuple(i[keep] for i in idx)
        out[chosen] = tc[keep]
        todo[chosen] = False
    return out


def shade(prep: _Prepared, hits: Traced, pixel: float) -> np.ndarray:
    """Linear RGB `[rows, cols, 3]` of traced rays: sky where nothing was hit, else lit surfaces.
    `pixel` is the angle a pixel spans (radians), for texture filtering."""
    scene, t, d = prep.scene, hits.t, hits.d
    colour = np.empty((*t.shape, 3))
    sky = np.nonzero(hits.ids < 0)
    if sky[0].size:
        colour[sky] = sky_colour(scene.light, tuple(c[sky] for c in d), pixel)
    o = scene.camera.origin()
    for k, shape, (rows, cols) in hits.windows:
        local = np.nonzero(hits.ids[rows, cols] == k)
        if local[0].size == 0:
            continue
        idx = (local[0] + rows.start, local[1] + cols.start)
        colour[idx] = surface_colour(scene, shape, o, t[idx], tuple(c[idx] for c in d), pixel)
    return colour


def surface_colour(scene: Scene, shape: Shape, o, t, d: Arrays, pixel: float) -> np.ndarray:
    """Lit, hazed linear RGB `[N, 3]` of hits at z-depth `t` along rays `d` on `shape`.

    Lambert shading from the sun plus sky light weighted by how much the normal faces up,
    two-sided (normals turned towards the camera), then haze that reaches the horizon colour
    at `far`. The texture filter width is the pixel's footprint on the surface.
    """
    light = scene.light
    p = tuple(o[k] + t * d[k] for k in range(3))
    n, u, v = shape.surface(p, d)
    length = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    facing = (n[0] * d[0] + n[1] * d[1] + n[2] * d[2]) / length
    flip = np.where(facing > 0, -1.0, 1.0)
    n = tuple(flip * c for c in n)
    dist = t * length
    footprint = dist * pixel / np.maximum(np.abs(facing), 0.05)
    albedo = shape.material.albedo(u, v, footprint)
    sun_dir = light.direction
    lambert = np.maximum(0.0, n[0] * sun_dir[0] + n[1] * sun_dir[1] + n[2] * sun_dir[2])
    sky_light = 0.65 + 0.35 * n[2]
    lit = albedo * (
        np.asarray(light.ambient) * sky_light[:, None] + np.asarray(light.sun) * lambert[:, None]
    )
    haze = (1.0 - np.exp(-4.0 * (dist / scene.far) ** 2))[:, None]
    return lit * (1.0 - haze) + np.asarray(light.sky_horizon) * haze


def sky_colour(light: Light, d: Arrays, pixel: float) -> np.ndarray:
    """Linear RGB `[N, 3]` of the sky along rays `d`: horizon-to-zenith gradient, a sun glow and
    clouds on a plane above the camera (filtered by the pixel's footprint on that plane)."""
    length = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    up = np.clip(d[2] / length, 0.0, 1.0)
    horizon, zenith = np.asarray(light.sky_horizon), np.asarray(light.sky_zenith)
    colour = horizon + (zenith - horizon) * np.sqrt(up)[:, None]
    s = light.direction
    cos_sun = np.maximum(0.0, (d[0] * s[0] + d[1] * s[1] + d[2] * s[2]) / length)
    glow = 0.5 * cos_sun**64 + 2.0 * (cos_sun > 0.9995)  # halo and disc
    colour = colour + np.asarray(light.sun) * glow[:, None]
    if light.clouds > 0:
        colour = _clouds(light, d, up, colour, pixel)
    return colour


def _clouds(light: Light, d: Arrays, up: np.ndarray, colour: np.ndarray, pixel: float):
    above = np.nonzero(up > 0.02)
    if above[0].size == 0:
        return colour
    dz = d[2][above]
    scale = light.cloud_scale
    x, y = d[0][above] / dz / scale, d[1][above] / dz / scale
    length = np.sqrt(d[0][above] ** 2 + d[1][above] ** 2 + dz**2)
    width = pixel * (length / dz) ** 2 / scale
    density = fbm(x, y, width, light.cloud_seed, octaves=5)
    cover = np.clip((density - (1.0 - light.clouds) * 0.7 - 0.15) * 4.0, 0.0, 1.0)
    fade = np.clip((up[above] - 0.02) * 8.0, 0.0, 1.0)
    white = np.asarray(light.sun) * 0.9 + np.asarray(light.ambient) * 0.5
    mix = (cover * fade)[:, None]
    colour[above] = colour[above] * (1.0 - mix) + white * mix
    return colour


def encode_srgb(colour: np.ndarray) -> np.ndarray:
    """Linear RGB in [0, 1] → 8-bit gamma-encoded RGB (gamma 1/2.2, rounded to nearest)."""
    return np.rint(255.0 * np.power(np.clip(colour, 0.0, 1.0), GAMMA)).astype(np.uint8)
