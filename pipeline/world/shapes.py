"""The primitives of a world scene and their ray intersections, vectorised over pixels.

Every shape answers three questions (see `pipeline.world.camera` for the conventions):

- `corners()`: points whose convex hull holds the shape (None: unbounded), for culling;
- `hits(origin, d)`: the ray parameters `t` (= z-depth) where rays `origin + t * d` enter the
  shape, as a list of candidate arrays, nearest first, `inf` where there is none. Shapes with a
  cut-out give their far side too, so a ray through a hole in the near side can still hit it;
- `surface(p, d)`: at hit points `p` (3 arrays `[N]`), the outward normal and the 2-D surface
  coordinates `(u, v)` in metres that the material's pattern is a function of.

Arithmetic is element-wise in float64, so a pixel gets the same bits in any block.
Intersections use the closest-approach form (distance from the centre or axis to the ray's
nearest point) rather than the textbook quadratic, so thin wires 100 m away stay exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from pipeline.world.textures import Material

Vec3 = tuple[float, float, float]
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
INF = math.inf


def _dot(d: Arrays, v) -> np.ndarray:
    return d[0] * v[0] + d[1] * v[1] + d[2] * v[2]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class Shape:
    """Base class: a material and the JSON (de)serialisation shared by every kind."""

    material: Material

    kind = ""

    @property
    def has_cutout(self) -> bool:
        return self.material.has_cutout

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if f.name == "material" else _plain(value)
        return out

    def corners(self) -> np.ndarray | None:
        raise NotImplementedError

    def hits(self, o: np.ndarray, d: Arrays) -> list[np.ndarray]:
        raise NotImplementedError

    def surface(self, p: Arrays, d: Arrays) -> tuple[Arrays, np.ndarray, np.ndarray]:
        raise NotImplementedError


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Ground(Shape):
    """The infinite horizontal plane z = `height`; u, v are world x, y."""

    height: float = 0.0
    kind = "ground"

    def corners(self) -> None:
        return None

    def hits(self, o: np.ndarray, d: Arrays) -> list[np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.height - o[2]) / d[2]
        return [np.where(t > 0, t, INF)]

    def surface(self, p: Arrays, d: Arrays) -> tuple[Arrays, np.ndarray, np.ndarray]:
        one, zero = np.ones(p[0].shape), np.zeros(p[0].shape)
        return (zero, zero, one), p[0], p[1]


@dataclass(frozen=True)
class Sphere(Shape):
    """A sphere; u, v are longitude and latitude as arc lengths (metres) on it."""

    center: Vec3 = (0.0, 0.0, 0.0)
    radius: float = 1.0
    kind = "sphere"

    def corners(self) -> np.ndarray:
        return _box_corners(np.asarray(self.center), np.full(3, self.radius))

    def hits(self, o: np.ndarray, d: Arrays) -> list[np.ndarray]:
        oc = o - np.asarray(self.center)
        a = _dot(d, d)
        proj = -_dot(d, oc) / a  # t of the ray's point nearest the centre
        miss2 = sum((oc[k] + proj * d[k]) ** 2 for k in range(3))
        h2 = self.radius**2 - miss2
        half = np.sqrt(np.maximum(h2, 0.0) / a)
        near = np.where(h2 >= 0, proj - half, INF)
        if not self.has_cutout:
            return [near]
        return [near, np.where(h2 >= 0, proj + half, INF)]

    def surface(self, p: Arrays, d: Arrays) -> tuple[Arrays, np.ndarray, np.ndarray]:
        n = tuple((p[k] - self.center[k]) / self.radius for k in range(3))
        u = self.radius * np.arctan2(n[1], n[0])
        v = self.radius * np.arcsin(np.clip(n[2], -1.0, 1.0))
        return n, u, v  # type: ignore[return-value]


@dataclass(frozen=True)
class Box(Shape):
    """A box standing upright, turned by `yaw_deg` about the vertical; u, v are the face's own
    coordinates (metres from the box centre)."""

    center: Vec3 = (0.0, 0.0, 0.0)
    size: Vec3 = (1.0, 1.0, 1.0)
    yaw_deg: float = 0.0
    kind = "box"

    def axes(self) -> np.ndarray:
        c, s = math.cos(math.radians(self.yaw_deg)), math.sin(math.radians(self.yaw_deg))
        return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])

    def corners(self) -> np.ndarray:
        half = np.asarray(self.size) / 2
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        return np.asarray(self.center) + (signs * half) @ self.axes()

    def hits(self, o: np.ndarray, d: Arrays) -> list[np.ndarray]:
        axes, half = self.axes(), np.asarray(self.size) / 2
        oc = o - np.asarray(self.center)
        t_near, t_far = -INF, INF
        with np.errstate(divide="ignore", invalid="ignore"):
            for k in range(3):
                ol, dl = float(oc @ axes[k]), _dot(d, axes[k])
                t_a, t_b = (-half[k] - ol) / dl, (half[k] - ol) / dl
                t_near = np.fmax(t_near, np.fmin(t_a, t_b))
                t_far = np.fmin(t_far, np.fmax(t_a, t_b))
        hit = (t_near <= t_far) & (t_far > 0)
        return [np.where(hit, np.where(t_near > 0, t_near, t_far), INF)]

    def surface(self, p: Arrays, d: Arrays) -> tuple[Arrays, np.ndarray, np.ndarray]:
        axes, half = self.axes(), np.asarray(self.size) / 2
        q = [_dot(tuple(p[k] - self.center[k] for k in range(3)), axes[i]) for i in range(3)]
        ratio = [np.abs(q[i]) / half[i] for i in range(3)]
        face = np.where(ratio[0] >= ratio[1], 0, 1)
        face = np.where(ratio[2] >= np.maximum(ratio[0], ratio[1]), 2, face)
        sign = np.sign(np.choose(face, q))
        n = tuple(
            sign * np.choose(face, [np.full(face.shape, axes[i][k]) for i in range(3)])
            for k in range(3)
        )
        u = np.choose(face, [q[1], q[0], q[0]])
        v = np.choose(face, [q[2], q[2], q[1]])
        return n, u, v  # type: ignore[return-value]


@dataclass(frozen=True)
class Cylinder(Shape):
    """A capped cylinder from `p0` to `p1` (any direction: poles, trunks, wires, pipes);
    u is the arc length around the axis, v the distance along it."""

    p0: Vec3 = (0.0, 0.0, 0.0)
    p1: Vec3 = (0.0, 0.0, 1.0)
    radius: float = 0.5
    kind = "cylinder"

    def frame(self) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """Unit axis, length and two unit vectors across the axis."""
        axis = np.asarray(self.p1, dtype=np.float64) - np.asarray(self.p0)
        length = float(np.linalg.norm(axis))
        a = axis / length
        helper = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e1 = _unit(np.cross(a, helper))
        return a, length, e1, np.cross(a, e1)

    def corners(self) -> np.ndarray:
        a, _length, e1, e2 = self.frame()
        rim = [s1 * e1 + s2 * e2 for s1 in (-1, 1) for s2 in (-1, 1)]
        ends = (np.asarray(self.p0), np.asarray(self.p1))
        return np.array([end + self.radius * r for end in ends for r in rim])

    def hits(self, o: np.ndarray, d: Arrays) -> list[np.ndarray]:
        a, length, _e1, _e2 = self.frame()
        oc = o - np.asarray(self.p0)
        oca, oc_perp = float(oc @ a), oc - float(oc @ a) * a
        da = _dot(d, a)
        d_perp = tuple(d[k] - da * a[k] for k in range(3))
        r2 = self.radius**2
        with np.errstate(divide="ignore", invalid="ignore"):
            aa = _dot(d_perp, d_perp)
            proj = -_dot(d_perp, oc_perp) / aa  # t nearest the axis (NaN: ray along it)
            h2 = r2 - sum((oc_perp[k] + proj * d_perp[k]) ** 2 for k in range(3))
        out = np.full(h2.shape, INF)
        near = np.nonzero(h2 >= 0)  # only rays that pass within the radius can hit side or caps
        if near[0].size:
            dn = tuple(c[near] for c in d_perp)
            out[near] = self._entry(oca, oc_perp, da[near], dn, proj[near], h2[near], aa[near])
        return [out]

    def _entry(self, oca, oc_perp, da, d_perp, proj, h2, aa) -> np.ndarray:
        """The entry t of rays passing within the radius: the side, or a cap if nearer."""
        length, r2 = self.frame()[1], self.radius**2
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = proj - np.sqrt(h2 / aa)
            z = oca + t_side * da
            best = np.where((z >= 0) & (z <= length) & (t_side > 0), t_side, INF)
            for end in (0.0, length):
                t_cap = (end - oca) / da
                rad2 = sum((oc_perp[k] + t_cap * d_perp[k]) ** 2 for k in range(3))
                best = np.where((rad2 <= r2) & (t_cap > 0) & (t_cap < best), t_cap, best)
        return best

    def surface(self, p: Arrays, d: Arrays) -> tuple[Arrays, np.ndarray, np.ndarray]:
        a, length, e1, e2 = self.frame()
        w = tuple(p[k] - self.p0[k] for k in range(3))
        z = _dot(w, a)
        radial = tuple(w[k] - z * a[k] for k in range(3))
        x1, x2 = _dot(radial, e1), _dot(radial, e2)
        tol = 1e-9 * max(length, self.radius)
        cap = np.where(z < tol, -1.0, np.where(z > length - tol, 1.0, 0.0))
        side = cap == 0
        n = tuple(np.where(side, radial[k] / self.radius, cap * a[k]) for k in range(3))
        u = np.where(side, self.radius * np.arctan2(x2, x1), x1)
        v = np.where(side, z, x2)
        return n, u, v  # type: ignore[return-value]


@dataclass(frozen=True)
class Quad(Shape):
    """A flat rectangle `center ± half_u ± half_v` (walls, boards, fences, foliage cards);
    `half_u` ⟂ `half_v`; u, v are metres from the centre along them."""

    center: Vec3 = (0.0, 0.0, 0.0)
    half_u: Vec3 = (1.0, 0.0, 0.0)
    half_v: Vec3 = (0.0, 0.0, 1.0)
    kind = "quad"

    def __post_init__(self) -> None:
        if abs(float(np.dot(self.half_u, self.half_v))) > 1e-9 * float(
            np.linalg.norm(self.half_u) * np.linalg.norm(self.half_v)
        ):
            raise ValueError("a quad's half_u and half_v must be perpendicular")

    def normal(self) -> np.ndarray:
        return _unit(np.cross(self.half_u, self.half_v))

    def corners(self) -> np.ndarray:
        c, hu, hv = (np.asarray(v) for v in (self.center, self.half_u, self.half_v))
        return np.array([c + su * hu + sv * hv for su in (-1, 1) for sv in (-1, 1)])

    def hits(self, o: np.ndarray, d: Arrays) -> list[np.ndarray]:
        c, hu, hv = (np.asarray(v) for v in (self.center, self.half_u, self.half_v))
        oc = o - c
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -float(oc @ self.normal()) / _dot(d, self.normal())
            s = (float(oc @ hu) + t * _dot(d, hu)) / float(hu @ hu)
            q = (float(oc @ hv) + t * _dot(d, hv)) / float(hv @ hv)
        inside = (np.abs(s) <= 1) & (np.abs(q) <= 1) & (t > 0)
        return [np.where(inside, t, INF)]

    def surface(self, p: Arrays, d: Arrays) -> tuple[Arrays, np.ndarray, np.ndarray]:
        w = tuple(p[k] - self.center[k] for k in range(3))
        n = self.normal()
        u = _dot(w, _unit(self.half_u))
        v = _dot(w, _unit(self.half_v))
        return tuple(np.full(u.shape, n[k]) for k in range(3)), u, v  # type: ignore[return-value]


def _box_corners(center: np.ndarray, half: np.ndarray) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    return center + signs * half


SHAPES: dict[str, type[Shape]] = {c.kind: c for c in (Ground, Sphere, Box, Cylinder, Quad)}


def shape_from_json(obj: dict) -> Shape:
    """The shape a `Shape.to_json` dict describes; an unknown kind raises `ValueError`."""
    kind = obj.get("kind")
    if kind not in SHAPES:
        raise ValueError(f"unknown shape kind {kind!r}; valid: {', '.join(sorted(SHAPES))}")
    cls = SHAPES[kind]
    values = {}
    for f in fields(cls):
        value = obj[f.name]
        if f.name == "material":
            values[f.name] = Material.from_json(value)
        elif isinstance(value, list):
            values[f.name] = tuple(float(v) for v in value)
        else:
            values[f.name] = float(value)
    return cls(**values)
