"""Decoding untrusted images into what an image shard stores, and the decode every reader uses.

`prepare_image` turns the bytes of any input image into one of:

- `Accepted`: the bytes to store and the image size. A baseline JPEG that decodes to 8-bit RGB and
  needs no EXIF rotation is stored as its original bytes (`jpg`); everything else is converted to
  8-bit RGB, upright, and stored as lossless PNG (`png`). A reader therefore only ever decodes a
  plain RGB JPEG or PNG, with `decode_rgb`, and gets exactly the recorded size.
- `Rejected`: the origin and a reason. Bad input never raises.

Conversions: EXIF orientation is applied (`PIL.ImageOps.exif_transpose`); grayscale, palette,
bilevel and CMYK go through PIL's `convert("RGB")`; transparency (RGBA, LA, palette or grey with a
transparent colour) is composited on white; 16-bit and 32-bit integer images are scaled by their
bit depth (`v * 255 / (2**bits - 1)`, never clipped); float images in [0, 1] are scaled by 255,
other float ranges are stretched min..max. ICC profiles are ignored. Multi-frame files (TIFF, WebP,
PNG animations) keep their first frame. EXIF `FocalLengthIn35mmFilm` is read into
`Accepted.focal35` (the image's camera, `pipeline.dataset.camera`); no other metadata is kept.

`DecodeParams.max_pixels` (`--max-pixels`) is the one limit on image size: the header's size is
checked against it before any pixel is decoded, and PIL's own decompression-bomb limit
(`Image.MAX_IMAGE_PIXELS`) is set from it while `prepare_image` runs, in whichever process runs it,
so a limit above PIL's default is honoured and a refusal always names the flag. Stored images
passed that check, so `decode_rgb` opens them without PIL's limit.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin

from pipeline.toolkit.messages import plain

PIL_MAX_IMAGE_PIXELS = 89_478_485  # PIL's default Image.MAX_IMAGE_PIXELS; our default limit too
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8"
ORIENTATION_TAG = 0x0112
EXIF_IFD, FOCAL_35MM_TAG = 0x8769, 0xA405
# start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
BASELINE_SOF = 0xC0
HIGH_DEPTH_MODES = frozenset(["I;16", "I;16B", "I;16L", "I;16N", "I", "F"])
ALPHA_MODES = frozenset(["RGBA", "RGBa", "LA", "La", "PA"])


@dataclass(frozen=True)
class DecodeParams:
    """What counts as a usable image; recorded in dataset.json."""

    min_side: int = 64
    """Images whose short side is below this many pixels are rejected (`--min-side`)."""
    max_pixels: int = PIL_MAX_IMAGE_PIXELS
    """Images with more pixels are rejected as possible decompression bombs (`--max-pixels`);
    PIL's own limit follows it during the decode."""

    def __post_init__(self) -> None:
        if self.min_side < 1:
            raise ValueError(f"--min-side must be ≥ 1, got {self.min_side}")
        if self.max_pixels < 1:
            raise ValueError(f"--max-pixels must be ≥ 1, got {self.max_pixels}")

    def too_many_pixels(self, width: int, height: int) -> str:
        """The reason to reject an image of this size, or '' if it is within `max_pixels`."""
        if width * height <= self.max_pixels:
            return ""
        return (
            f"decompression bomb guard: {width}x{height} = {width * height} pixels exceeds the "
            f"limit of {self.max_pixels} (--max-pixels; raise it to accept larger images)"
        )


@dataclass(frozen=True)
class Accepted:
    """A usable image: `data` is stored as member `{key}.{ext}`; size is (height, width)."""

    ext: str
    data: bytes
    height: int
    width: int
    focal35: float = 0.0
    """EXIF `FocalLengthIn35mmFilm` in mm; 0 when absent or unreadable (`focal_35mm`)."""


@dataclass(frozen=True)
class Rejected:
    """An image that is not used, and why."""

    origin: str
    reason: str


def jpeg_frame_marker(data: bytes) -> int | None:
    """The SOF marker byte of a JPEG stream (0xC0 = baseline), or None if none is found."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
        elif marker in SOF_MARKERS:
            return marker
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8); 1 when absent, invalid or unreadable."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # corrupt EXIF does not make the pixels unusable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def focal_35mm(img: Image.Image) -> float:
    """EXIF `FocalLengthIn35mmFilm` (mm, in the Exif IFD or, from some writers, in IFD0); 0.0
    when absent, 0 (unknown by the standard), invalid or unreadable."""
    try:
        exif = img.getexif()
        value = exif.get_ifd(EXIF_IFD).get(FOCAL_35MM_TAG, exif.get(FOCAL_35MM_TAG, 0))
        value = float(value[0] if isinstance(value, tuple) and value else value)
    except Exception:  # corrupt EXIF does not make the pixels unusable
        return 0.0
    return value if 0 < value < 1e5 else 0.0


def full_scale(img: Image.Image, values: np.ndarray) -> int:
    """The largest value of a high-depth integer image's bit depth (TIFF tags, else the mode)."""
    tags = getattr(img, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None
    bits = bits[0] if isinstance(bits, tuple) and bits else bits
    if isinstance(bits, int) and 8 < bits <= 32:
        signed = tags.get(339) in (2, (2,))  # SampleFormat 2: two's complement integers
        return 2 ** (bits - 1 if signed else bits) - 1
    if img.mode.startswith("I;16") or values.size == 0 or int(values.max()) <= 0xFFFF:
        return 0xFFFF
    return 2**31 - 1


def high_depth_to_rgb(img: Image.Image) -> np.ndarray:
    """16/32-bit integer or float grayscale → uint8 RGB, scaled by bit depth (never clipped)."""
    values = np.asarray(img)
    if img.mode == "F":
        v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(v.min()), float(v.max())
        if not (lo >= 0.0 and hi <= 1.0):
            v = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        scaled = v * 255.0
    else:
        v = np.clip(values.astype(np.float64), 0, None)
        scaled = v * (255.0 / full_scale(img, values))
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def composite_on_white(img: Image.Image) -> np.ndarray:
    """Any image with transparency → uint8 RGB, alpha-blended over white."""
    rgba = np.asarray(img.convert("RGBA")).astype(np.uint32)
    alpha = rgba[:, :, 3:4]
    rgb = (rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return rgb.astype(np.uint8)


def has_transparency(img: Image.Image) -> bool:
    return img.mode in ALPHA_MODES or "transparency" in img.info


def to_rgb(img: Image.Image) -> np.ndarray:
    """A decoded PIL image of any supported mode → contiguous uint8 [H, W, 3]."""
    if img.mode in HIGH_DEPTH_MODES:
        return high_depth_to_rgb(img)
    if has_transparency(img):
        return composite_on_white(img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)


PNG_COMPRESS_LEVEL = 6
"""zlib's level for PNG files (Pillow's default): 1 writes faster and larger files."""


def encode_png(pixels: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Lossless, metadata-free PNG bytes of a uint8 `[H, W, 3]` or `[H, W]` array: the same
    pixels and level give the same bytes (for a given zlib). The project's one PNG encoder."""
    buf = io.BytesIO()
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def keep_original(img: Image.Image, data: bytes, turn: int) -> bool:
    """Whether the input bytes can be stored as is: an upright, 8-bit RGB, baseline JPEG."""
    return (
        img.format in ("JPEG", "MPO")
        and img.mode == "RGB"
        and turn == 1
        and jpeg_frame_marker(data) == BASELINE_SOF
    )


@contextmanager
def pil_pixel_limit(limit: int | None) -> Iterator[None]:
    """PIL's decompression-bomb limit set to `limit` (None: off) inside the block, then restored.

    PIL warns above the limit and refuses above twice it; the warning is silenced, as the size is
    checked against `--max-pixels` by `_open`. The limit is a global of the process: callers
    decode one image at a time per process (`prepare` decodes in its own worker processes).
    """
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _open(data: bytes, origin: str, params: DecodeParams) -> Image.Image | Rejected:
    """Open and fully decode the first frame, or say why not (under `pil_pixel_limit`)."""
    if not data:
        return Rejected(origin, "empty file (0 bytes)")
    try:
        with pil_pixel_limit(None):  # reads the header only; its size is checked just below
            img = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        return Rejected(origin, "not an image (no decoder recognises the bytes)")
    except Exception as e:  # PIL plugins raise many types on malformed headers
        return Rejected(origin, f"unreadable image header ({type(e).__name__}: {plain(e)})")
    too_big = params.too_many_pixels(*img.size)
    if too_big:
        return Rejected(origin, too_big)
    try:
        img.load()
    except Image.DecompressionBombError as e:  # a frame or tile larger than the image
        return Rejected(origin, f"decompression bomb guard: {e} (--max-pixels)")
    except Exception as e:
        return Rejected(origin, f"truncated or corrupt image data ({type(e).__name__}: {plain(e)})")
    return img


def prepare_image(
    data: bytes, origin: str, params: DecodeParams | None = None
) -> Accepted | Rejected:
    """Validate and convert one input image into what the image shard stores (never raises)."""
    params = params or DecodeParams()
    with pil_pixel_limit(params.max_pixels):
        return _prepare(data, origin, params)


def _prepare(data: bytes, origin: str, params: DecodeParams) -> Accepted | Rejected:
    img = _open(data, origin, params)
    if isinstance(img, Rejected):
        return img
    try:
        turn = orientation(img)
        width, height = (img.height, img.width) if turn >= 5 else img.size
        if min(height, width) < params.min_side:
            return Rejected(
                origin,
                f"too small: {width}x{height} pixels, the short side is under {params.min_side} "
                "(--min-side)",
            )
        focal = focal_35mm(img)
        if keep_original(img, data, turn):
            return Accepted("jpg", data, height, width, focal)
        if turn != 1:
            img = ImageOps.exif_transpose(img)
        rgb = to_rgb(img)
    except Exception as e:  # an unsupported mode or a plugin failure is a bad image, not a crash
        return Rejected(origin, f"cannot convert to RGB ({type(e).__name__}: {e})")
    return Accepted("png", encode_png(rgb), rgb.shape[0], rgb.shape[1], focal)


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode a stored image (`{key}.jpg` or `{key}.png`) to uint8 RGB [H, W, 3].

    This is the decode labelling and training use. It applies no EXIF rotation: stored images are
    upright already, and their shape equals the size recorded in `{key}.json`.
    """
    with open_stored(data) as img:
        if img.mode != "RGB":
            img = img.convert("RGB")
        return np.array(img, dtype=np.uint8)


def open_stored(data: bytes) -> Image.Image:
    """Open a stored image (a JPEG or PNG that `prepare_image` accepted) without PIL's limit.

    Its size passed `--max-pixels`, which may be above PIL's default limit, so `Image.open`'s
    decompression-bomb check (a process-wide setting) is bypassed by opening with the format's
    plugin directly. Bytes that are neither fall back to `Image.open` and its errors.
    """
    plugin = {PNG_MAGIC: PngImagePlugin.PngImageFile, JPEG_MAGIC: JpegImagePlugin.JpegImageFile}
    for magic, factory in plugin.items():
        if data.startswith(magic):
            try:
                return factory(io.BytesIO(data))
            except Exception:  # noqa: BLE001 - a corrupt header: Image.open says what is wrong
                break
    return Image.open(io.BytesIO(data))
