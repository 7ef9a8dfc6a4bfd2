"""Bundled demo images: real photos shipped with scikit-image, written as JPEG and PNG files.

Used by `pipeline demo`, the tests and the benchmark. The bytes are deterministic for a given
Pillow / libjpeg build: no metadata, fixed quality and compression.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from pipeline.images.decode import encode_png
from pipeline.toolkit.atomic import write_bytes

JPEG_QUALITY = 90


def _motorcycle_left() -> np.ndarray:
    left, _right, _disparity = skdata.stereo_motorcycle()
    return left


# name → (loader, file format). Colour photos, plus `camera` (8-bit grayscale) to exercise
# conversion. Sizes range from 300x451 (chelsea) to 1411x1411 (retina).
SAMPLES: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "astronaut": (skdata.astronaut, "JPEG"),
    "camera": (skdata.camera, "PNG"),
    "chelsea": (skdata.chelsea, "JPEG"),
    "coffee": (skdata.coffee, "JPEG"),
    "hubble_deep_field": (skdata.hubble_deep_field, "JPEG"),
    "motorcycle_left": (_motorcycle_left, "PNG"),
    "retina": (skdata.retina, "JPEG"),
    "rocket": (skdata.rocket, "JPEG"),
}
SUFFIX = {"JPEG": ".jpg", "PNG": ".png"}


def sample_array(name: str) -> np.ndarray:
    """The pixels of one bundled sample (uint8, [H, W, 3] or [H, W] for grayscale)."""
    try:
        loader, _fmt = SAMPLES[name]
    except KeyError:
        raise ValueError(f"unknown sample {name!r}; valid: {', '.join(SAMPLES)}") from None
    return np.ascontiguousarray(loader())


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    """Metadata-free JPEG (quality 90, baseline) or PNG bytes."""
    if fmt == "PNG":
        return encode_png(pixels)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, quality=JPEG_QUALITY)
    return buf.getvalue()


def write_sample_images(folder: Path) -> list[Path]:
    """Write every bundled sample into `folder` (created if needed); return the paths, sorted."""
    folder = Path(folder)
    paths = []
    for name, (_loader, fmt) in SAMPLES.items():
        path = folder / f"{name}{SUFFIX[fmt]}"
        write_bytes(path, encode(sample_array(name), fmt))
        paths.append(path)
    return sorted(paths)
