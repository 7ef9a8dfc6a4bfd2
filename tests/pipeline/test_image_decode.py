"""Decoding of image inputs: every bad-input class and pixel mode, and what is stored."""

from __future__ import annotations

import io

import numpy as np
import pytest
from image_helpers import encode, gradient, jpeg, png_header_only
from PIL import Image

from pipeline.images.decode import (
    PIL_MAX_IMAGE_PIXELS,
    Accepted,
    DecodeParams,
    Rejected,
    decode_rgb,
    jpeg_frame_marker,
    prepare_image,
)
from pipeline.images.photos import sample_array


def accept(data: bytes, **params) -> Accepted:
    result = prepare_image(data, "x", DecodeParams(**params))
    assert isinstance(result, Accepted), result
    stored = decode_rgb(result.data)
    assert stored.dtype == np.uint8 and stored.shape == (result.height, result.width, 3)
    return result


def reject(data: bytes, match: str, **params) -> Rejected:
    result = prepare_image(data, "photos/x.jpg", DecodeParams(**params))
    assert isinstance(result, Rejected), result
    assert result.origin == "photos/x.jpg"
    assert match in result.reason, result.reason
    return result


# ---------------------------------------------------------------- decoding: bad input


def test_an_empty_file_is_rejected() -> None:
    reject(b"", "empty file")


def test_truncated_jpeg_rejected() -> None:
    data = jpeg(gradient())
    reject(data[: len(data) // 2], "truncated")


def test_text_renamed_jpg_rejected() -> None:
    reject(b"this is not an image\n" * 10, "not an image")


def test_too_small_rejected_and_limit_configurable() -> None:
    small = jpeg(gradient(50, 200))
    reject(small, "too small")
    assert accept(small, min_side=50).height == 50
    assert accept(jpeg(gradient(64, 64))).width == 64


def test_decompression_bomb_rejected_by_max_pixels() -> None:
    reject(jpeg(gradient(100, 100)), "decompression bomb", max_pixels=9_999)


def test_decompression_bomb_header_rejected_without_decoding(monkeypatch) -> None:
    """The size in the header decides: PIL's pixel decoder (`ImageFile.load`) never runs."""
    from PIL import ImageFile

    loads = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: loads.append(im.size) or real(im))
    reject(png_header_only(30_000, 30_000), "decompression bomb")
    reject(png_header_only(10_000, 10_000), "decompression bomb")  # PIL warns only; we reject
    assert loads == []
    accept(encode(Image.fromarray(gradient(64, 64)), "PNG"))  # the control: a real decode
    assert loads and loads[0] == (64, 64)


def test_max_pixels_is_the_one_limit_and_named() -> None:
    """Above twice PIL's limit, PIL's own text used to be the reason; --max-pixels is the one."""
    for side in (30_000, 10_000):
        result = reject(png_header_only(side, side), f"{side}x{side} = {side * side} pixels")
        assert f"limit of {PIL_MAX_IMAGE_PIXELS} (--max-pixels" in result.reason
    small = reject(jpeg(gradient(100, 100)), "100x100 = 10000 pixels", max_pixels=9_999)
    assert "limit of 9999 (--max-pixels" in small.reason


def test_max_pixels_can_be_raised_above_pils_limit(monkeypatch) -> None:
    """PIL's limit follows --max-pixels during the decode, and is restored after it."""
    assert DecodeParams(max_pixels=10**9).max_pixels == 10**9  # used to be refused
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # a PIL whose limit is below ours
    for data in (jpeg(gradient(100, 100)), encode(Image.fromarray(gradient(100, 100)), "PNG")):
        assert accept(data, max_pixels=20_000).width == 100
        reject(data, "limit of 9999 (--max-pixels", max_pixels=9_999)
    assert Image.MAX_IMAGE_PIXELS == 1_000
    stored = prepare_image(encode(Image.fromarray(gradient(100, 100)), "GIF"), "x")
    assert isinstance(stored, Accepted) and stored.ext == "png"
    decoded = decode_rgb(stored.data)  # readers of stored images: not held to PIL's limit
    assert decoded.shape == (100, 100, 3)
    assert decode_rgb(jpeg(gradient(100, 100))).shape == (100, 100, 3)


def test_invalid_params_name_the_flag() -> None:
    with pytest.raises(ValueError, match="--min-side"):
        DecodeParams(min_side=0)
    with pytest.raises(ValueError, match="--max-pixels"):
        DecodeParams(max_pixels=0)


# ---------------------------------------------------------------- decoding: what is stored


def test_baseline_jpeg_kept_as_original_bytes() -> None:
    data = jpeg(gradient())
    assert jpeg_frame_marker(data) == 0xC0
    result = accept(data)
    assert result.ext == "jpg" and result.data == data
    assert (result.height, result.width) == (96, 128)


def test_progressive_jpeg_converted_to_png() -> None:
    data = jpeg(gradient(), progressive=True)
    assert jpeg_frame_marker(data) == 0xC2
    result = accept(data)
    assert result.ext == "png"
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(decode_rgb(result.data), original)


def test_exif_rotated_jpeg_is_upright_with_swapped_size() -> None:
    pixels = gradient(96, 128)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    result = accept(jpeg(pixels, exif=exif.tobytes()))
    assert result.ext == "png"
    assert (result.height, result.width) == (128, 96)
    upright = decode_rgb(result.data).astype(int)
    assert np.abs(upright - np.rot90(pixels, k=-1)).mean() < 3


UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("value", sorted(UPRIGHT))
def test_every_exif_orientation_exactly(value: int) -> None:
    pixels = gradient(96, 128)
    exif = Image.Exif()
    exif[0x0112] = value
    result = accept(encode(Image.fromarray(pixels), "PNG", exif=exif.tobytes()))
    assert np.array_equal(decode_rgb(result.data), UPRIGHT[value](pixels))


def test_exif_orientation_1_keeps_original() -> None:
    exif = Image.Exif()
    exif[0x0112] = 1
    data = jpeg(gradient(), exif=exif.tobytes())
    assert accept(data).data == data


def test_grayscale_becomes_rgb() -> None:
    gray = gradient()[:, :, 0]
    for fmt in ("PNG", "JPEG"):
        rgb = decode_rgb(accept(encode(Image.fromarray(gray), fmt)).data)
        assert np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(
            rgb[:, :, 1], rgb[:, :, 2]
        )
        assert np.abs(rgb[:, :, 0].astype(int) - gray).max() <= (0 if fmt == "PNG" else 8)


def test_rgba_composited_on_white() -> None:
    pixels = np.zeros((80, 80, 4), np.uint8)
    pixels[:, :40] = [200, 10, 10, 255]  # opaque red
    pixels[:, 40:60] = [0, 0, 0, 0]  # transparent → white
    pixels[:, 60:] = [0, 0, 0, 128]  # half-transparent black → mid grey
    result = accept(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    rgb = decode_rgb(result.data)
    assert result.ext == "png"
    assert rgb[0, 0].tolist() == [200, 10, 10]
    assert rgb[0, 50].tolist() == [255, 255, 255]
    assert rgb[0, 70].tolist() == [127, 127, 127]


def test_palette_and_la_become_rgb() -> None:
    img = Image.fromarray(gradient()).convert("P")
    rgb = decode_rgb(accept(encode(img, "PNG")).data)
    assert np.array_equal(rgb, np.asarray(img.convert("RGB")))
    la = Image.fromarray(gradient()[:, :, 0]).convert("LA")
    assert decode_rgb(accept(encode(la, "PNG")).data).shape == (96, 128, 3)


def test_cmyk_becomes_rgb() -> None:
    pixels = gradient()
    cmyk = Image.fromarray(pixels).convert("CMYK")
    tiff = decode_rgb(accept(encode(cmyk, "TIFF")).data)
    assert np.array_equal(tiff, pixels)
    jpg = accept(encode(cmyk, "JPEG", quality=95))
    assert jpg.ext == "png"
    assert np.abs(decode_rgb(jpg.data).astype(int) - pixels).mean() < 3


def test_16_bit_png_scaled_by_bit_depth_not_clipped() -> None:
    values = np.linspace(0, 65535, 96 * 128).round().astype(np.uint16).reshape(96, 128)
    values[0, :3] = [0, 1000, 65535]
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    rgb = decode_rgb(accept(encode(img, "PNG")).data)
    assert rgb[0, :3, 0].tolist() == [0, 4, 255]  # 1000 / 257 ≈ 3.9, not clipped to 255
    assert np.array_equal(rgb[:, :, 0], np.rint(values / 257).astype(np.uint8))


def test_32_bit_int_and_float_images() -> None:
    values = np.linspace(0, 2**31 - 1, 96 * 128).astype(np.int32).reshape(96, 128)
    rgb = decode_rgb(accept(encode(Image.fromarray(values, "I"), "TIFF")).data)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and abs(int(rgb[48, 64, 0]) - 128) <= 2
    unit = np.linspace(0, 1, 96 * 128, dtype=np.float32).reshape(96, 128)
    rgb = decode_rgb(accept(encode(Image.fromarray(unit, "F"), "TIFF")).data)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[-1, -1].tolist() == [255, 255, 255]


def test_webp_and_tiff_inputs() -> None:
    pixels = gradient()
    assert np.array_equal(decode_rgb(accept(encode(Image.fromarray(pixels), "TIFF")).data), pixels)
    webp = accept(encode(Image.fromarray(pixels), "WEBP", lossless=True))
    assert np.array_equal(decode_rgb(webp.data), pixels)


def test_real_photos_decode() -> None:
    for name in ("astronaut", "camera", "motorcycle_left"):
        pixels = sample_array(name)
        result = accept(encode(Image.fromarray(pixels), "PNG"))
        assert (result.height, result.width) == pixels.shape[:2]
