"""Decoders of the benchmark file formats; every failure names the file and the format expected."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from evaluation.datasets.base import DatasetError
from pipeline.toolkit.messages import plain

COLOUR_MODES = ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr")


def _open_image(data: bytes, where: str, expected: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{where}: cannot decode ({plain(e)}); expected {expected}") from e
    return img


def decode_rgb(data: bytes, where: str) -> np.ndarray:
    """uint8 `[H, W, 3]`; EXIF orientation is ignored, as the ground truth is not rotated."""
    img = _open_image(data, where, "an 8-bit colour image")
    if img.mode not in COLOUR_MODES:
        raise DatasetError(f"{where}: image mode {img.mode}; expected an 8-bit colour image")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def rgb_shape_only(data: bytes, where: str) -> np.ndarray:
    """A read-only zero image of the RGB file's size, from its header alone (no pixel decode):
    stands in for the image where only the ground truth is needed."""
    img = _open_image(data, where, "an 8-bit colour image")
    if img.mode not in COLOUR_MODES:
        raise DatasetError(f"{where}: image mode {img.mode}; expected an 8-bit colour image")
    w, h = img.size
    return np.broadcast_to(np.zeros((1, 1, 3), dtype=np.uint8), (h, w, 3))


def decode_png_u16(data: bytes, where: str) -> np.ndarray:
    """The values of a 16-bit greyscale PNG as uint16 `[H, W]`."""
    img = _open_image(data, where, "a 16-bit greyscale PNG")
    if img.format != "PNG" or img.mode not in ("I;16", "I;16B", "I"):
        raise DatasetError(
            f"{where}: {img.format} image of mode {img.mode}; expected a 16-bit greyscale PNG"
        )
    values = np.asarray(img)
    if img.mode == "I" and (values.min(initial=0) < 0 or values.max(initial=0) > 65535):
        raise DatasetError(f"{where}: values outside 0..65535; expected a 16-bit greyscale PNG")
    return values.astype(np.uint16)


def depth_from_u16(data: bytes, where: str, scale: float) -> np.ndarray:
    """float32 metres from a uint16 PNG storing `depth * scale` (0 = no measurement)."""
    return decode_png_u16(data, where).astype(np.float32) / np.float32(scale)


def decode_raw_f32(data: bytes, where: str, shape: tuple[int, int]) -> np.ndarray:
    """Little-endian float32 values of an image of `shape` (ETH3D's ground-truth format)."""
    expected = shape[0] * shape[1] * 4
    if len(data) != expected:
        raise DatasetError(
            f"{where}: {len(data)} bytes; expected raw little-endian float32 depth of "
            f"{shape[0]}x{shape[1]} (the RGB image's size) = {expected} bytes"
        )
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)


def decode_npy(data: bytes, where: str, expected: str) -> np.ndarray:
    """An array from `.npy` bytes (no pickles), trailing unit axes squeezed to `[H, W]`."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{where}: not a readable .npy file ({e}); expected {expected}") from e
    while arr.ndim > 2 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DatasetError(f"{where}: array of shape {arr.shape}; expected {expected}")
    return arr


def check_same_size(rgb: np.ndarray, rgb_where: str, other: np.ndarray, other_where: str) -> None:
    """Ground truth and image must cover the same pixels."""
    if other.shape[:2] != rgb.shape[:2]:
        h, w = other.shape[:2]
        raise DatasetError(
            f"{other_where}: {h}x{w}; expected the size of its image {rgb_where} "
            f"({rgb.shape[0]}x{rgb.shape[1]})"
        )
