"""The pinhole camera of a world scene: intrinsics, pose, rays and projection.

Conventions (used by every module of `pipeline.world`):

- World frame: metres, X east, Y north, Z up; the ground is the plane Z = 0 (or `Ground.height`).
- Camera frame (OpenCV): x right, y down, z forward along the optical axis.
- Pixels: column j, row i of the native image covers `[j, j+1) x [i, i+1)`; its centre is
  `(j + 0.5, i + 0.5)`. Boxes are `(x0, y0, x1, y1)` in these coordinates, half-open, as in
  `pipeline.dataset.plan`.
- The ray through image point `(x, y)` is `origin + t * d` with `d = R @ ((x - cx) / fx,
  (y - cy) / fy, 1)`: its camera-frame z component is 1, so the ray parameter `t` of a hit IS
  its z-depth (distance along the optical axis, not along the ray). Every depth in this
  package is z-depth in metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Vec3 = tuple[float, float, float]
Matrix3 = tuple[Vec3, Vec3, Vec3]


@dataclass(frozen=True)
class Camera:
    """A pinhole camera; `width` x `height` is the native image size the intrinsics refer to."""

    width: int
    height: int
    fx: float
    """Focal length in native pixels, horizontal."""
    fy: float
    cx: float
    """Principal point in native pixel coordinates (`width / 2` is the image centre)."""
    cy: float
    position: Vec3
    """Centre of projection, world metres."""
    rotation: Matrix3
    """World-from-camera rotation (rows of R): its columns are the camera's x (right), y (down)
    and z (forward) axes in world coordinates."""

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"camera size must be ≥ 1 px, got {self.height}x{self.width}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be > 0, got fx={self.fx}, fy={self.fy}")
        r = self.matrix()
        if not np.allclose(r.T @ r, np.eye(3), atol=1e-9) or np.linalg.det(r) < 0:
            raise ValueError("camera rotation must be a proper rotation matrix (R^T R = I)")

    @classmethod
    def looking(
        cls,
        width: int,
        height: int,
        hfov_deg: float,
        position: Vec3,
        yaw_deg: float = 0.0,
        pitch_deg: float = 0.0,
        roll_deg: float = 0.0,
    ) -> Camera:
        """A camera with square pixels, principal point at the image centre, horizontal field of
        view `hfov_deg`, looking along yaw/pitch/roll.

        yaw: compass turn, 0 looks north (+Y), positive turns left (towards -X); pitch: positive
        looks up; roll: turn about the optical axis, positive lifts the camera's right side.
        """
        yaw, pitch, roll = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
        forward = np.array(
            [-math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), math.sin(pitch)]
        )
        right0 = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        up0 = np.cross(right0, forward)
        right = math.cos(roll) * right0 + math.sin(roll) * up0
        up = -math.sin(roll) * right0 + math.cos(roll) * up0
        r = np.stack([right, -up, forward], axis=1)
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        rows = tuple(tuple(float(v) for v in row) for row in r)
        pos = tuple(float(v) for v in position)
        return cls(width, height, f, f, width / 2, height / 2, pos, rows)  # type: ignore[arg-type]

    def matrix(self) -> np.ndarray:
        """R as a float64 `[3, 3]` array (world = R @ camera)."""
        return np.asarray(self.rotation, dtype=np.float64)

    def origin(self) -> np.ndarray:
        return np.asarray(self.position, dtype=np.float64)

    def directions(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
        """World ray directions `(dx, dy, dz)`, each `[len(ys), len(xs)]`, through the image
        points `(xs[j], ys[i])` (native pixel coordinates, float64).

        Written element by element (no matrix product), so a pixel's direction is the same bytes
        whichever block of the image it is computed in: a crop renders exactly as the full image.
        """
        a = ((xs - self.cx) / self.fx)[None, :]
        b = ((ys - self.cy) / self.fy)[:, None]
        r = self.rotation
        return tuple(r[k][0] * a + r[k][1] * b + r[k][2] for k in range(3))

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points `[N, 3]` in camera coordinates `[N, 3]` (z = depth)."""
        return (np.asarray(points, dtype=np.float64) - self.origin()) @ self.matrix()

    def pixel_bounds(self, corners: np.ndarray | None, margin: float = 1.0) -> tuple | None:
        """A conservative image rectangle `(x_lo, x_hi, y_lo, y_hi)` (native pixels) holding the
        projection of everything inside the convex hull of `corners` `[N, 3]`.

        None: the hull lies wholly behind the camera (nothing to draw). Infinite bounds: no
        corners (an unbounded shape) or a hull that crosses the camera plane. In front of the
        camera perspective projection keeps convexity, so the corners' projections bound it.
        """
        if corners is None:
            return (-math.inf, math.inf, -math.inf, math.inf)
        pc = self.to_camera(corners)
        z = pc[:, 2]
        if np.all(z <= 0):
            return None
        if np.any(z <= 1e-6):
            return (-math.inf, math.inf, -math.inf, math.inf)
        x = self.fx * pc[:, 0] / z + self.cx
        y = self.fy * pc[:, 1] / z + self.cy
        pad_x = margin + 1e-9 * float(np.abs(x).max())
        pad_y = margin + 1e-9 * float(np.abs(y).max())
        return (x.min() - pad_x, x.max() + pad_x, y.min() - pad_y, y.max() + pad_y)

    def to_json(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "position": list(self.position),
            "rotation": [list(row) for row in self.rotation],
        }

    @classmethod
    def from_json(cls, obj: dict) -> Camera:
        return cls(
            width=int(obj["width"]),
            height=int(obj["height"]),
            fx=float(obj["fx"]),
            fy=float(obj["fy"]),
            cx=float(obj["cx"]),
            cy=float(obj["cy"]),
            position=tuple(float(v) for v in obj["position"]),  # type: ignore[arg-type]
            rotation=tuple(tuple(float(v) for v in row) for row in obj["rotation"]),  # type: ignore[arg-type]
        )


def sample_positions(lo: float, hi: float, n: int, offset: float = 0.5) -> np.ndarray:
    """`n` sample positions across `[lo, hi)`: `lo + (k + offset) * (hi - lo) / n`, k = 0..n-1.

    With `offset` 0.5 these are the pixel centres of `[lo, hi)` resampled to `n` pixels; when
    `hi - lo == n` (native resolution) they are exactly `lo + k + 0.5`, the native centres.
    """
    step = (hi - lo) / n
    return lo + (np.arange(n, dtype=np.float64) + offset) * step
