"""A world scene as data: camera, light, shapes, and its JSON form.

The JSON written beside every rendered image (`pipeline.world.files`) is `Scene.to_json()`; it
holds every number the renderer uses, so `render(Scene.from_json(obj), h, w, box)` redraws any
view of that image exactly, whatever generated it. Floats are written with Python's shortest
round-trip repr, so the JSON round trip is exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pipeline.world.camera import Camera
from pipeline.world.shapes import Shape, shape_from_json

FORMAT = "pipeline.world.scene/1"
Colour = tuple[float, float, float]


@dataclass(frozen=True)
class Light:
    """A sun (directional light) and the sky around it (linear RGB)."""

    direction: tuple[float, float, float] = (0.3, -0.4, 0.8660254037844386)
    """Unit vector towards the sun (world frame)."""
    sun: Colour = (1.0, 0.95, 0.85)
    ambient: Colour = (0.35, 0.38, 0.45)
    """Light from the sky on every surface (scaled by how much the normal faces up)."""
    sky_zenith: Colour = (0.25, 0.45, 0.85)
    sky_horizon: Colour = (0.75, 0.82, 0.9)
    """Sky colour at the horizon, also the colour of haze far away."""
    clouds: float = 0.0
    """Cloud cover of the sky, 0 (clear) to 1."""
    cloud_scale: float = 0.5
    """Cloud feature size, in units of the sky plane's height above the camera."""
    cloud_seed: int = 0

    def __post_init__(self) -> None:
        norm = sum(c * c for c in self.direction) ** 0.5
        if abs(norm - 1.0) > 1e-6:
            raise ValueError(f"light direction must be a unit vector, got length {norm}")

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, obj: dict) -> Light:
        values = {k: tuple(map(float, v)) if isinstance(v, list) else v for k, v in obj.items()}
        return cls(**values)


@dataclass(frozen=True)
class Scene:
    """Everything a render needs. Hits farther than `far` metres (z-depth) count as sky: their
    depth is invalid, as are rays that hit nothing."""

    camera: Camera
    light: Light
    shapes: tuple[Shape, ...] = field(default_factory=tuple)
    far: float = 300.0
    """Metres (z-depth); beyond it the world is sky, and haze has reached the horizon colour."""

    def __post_init__(self) -> None:
        if not self.far > 0:
            raise ValueError(f"far must be > 0 metres, got {self.far}")

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "camera": self.camera.to_json(),
            "light": self.light.to_json(),
            "far": self.far,
            "shapes": [s.to_json() for s in self.shapes],
        }

    @classmethod
    def from_json(cls, obj: dict) -> Scene:
        """The scene of a `to_json` dict; another format raises `ValueError` naming it."""
        if obj.get("format") != FORMAT:
            raise ValueError(
                f"not a world scene of format {FORMAT!r} (got {obj.get('format')!r}); render it "
                "again with this version of `pipeline world render`"
            )
        return cls(
            camera=Camera.from_json(obj["camera"]),
            light=Light.from_json(obj["light"]),
            shapes=tuple(shape_from_json(s) for s in obj["shapes"]),
            far=float(obj["far"]),
        )
