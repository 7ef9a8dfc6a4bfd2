"""Image inputs, decoding of every bad-input class and pixel mode, and image shards."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from pipeline.images.decode import (
    Accepted,
    DecodeParams,
    Rejected,
    decode_rgb,
    jpeg_frame_marker,
    prepare_image,
)
from pipeline.images.samples import sample_array
from pipeline.images.shards import ImageShardWriter, read_image_shard, shard_keys
from pipeline.images.sources import input_items, list_items, make_key, tar_items
from pipeline.labels.record import KEY_RE
from pipeline.toolkit import tario

# ---------------------------------------------------------------- helpers


def gradient(h: int = 96, w: int = 128) -> np.ndarray:
    """A smooth RGB image (JPEG-friendly) with distinct corners."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], axis=2).astype(
        np.uint8
    )


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def jpeg(pixels: np.ndarray, **options) -> bytes:
    return encode(Image.fromarray(pixels), "JPEG", quality=95, **options)


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


def make_tar(path: Path, members: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    """A tar as an external tool would write it (directory entries included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# ---------------------------------------------------------------- decoding: bad input


def test_zero_bytes_rejected() -> None:
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


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file that claims a huge size (its pixel data is missing)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def test_decompression_bomb_header_rejected_without_decoding() -> None:
    reject(png_header_only(30_000, 30_000), "decompression bomb")
    reject(png_header_only(10_000, 10_000), "decompression bomb")  # PIL warns only; we reject


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


# ---------------------------------------------------------------- sources


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_make_key() -> None:
    assert make_key("a/b/c.d e") == "a__b__c_d_e"
    assert make_key("sa_1") == "sa_1"
    assert make_key("caf\u00e9") == make_key("cafe\u0301") == "caf_"  # NFC first
    long = make_key("x" * 200)
    assert len(long) == 80 and long == make_key("x" * 200) and long != make_key("x" * 199)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("_under", "k_under"),
        ("-dash", "k-dash"),
        ("\u00e9", "k_"),
        (" space", "k_space"),
        ("(1) copy", "k_1__copy"),
        ("/_a/b", "k_a__b"),
        ("a/_b", "a___b"),  # already valid: unchanged
        ("9lives", "9lives"),
    ],
)
def test_make_key_starts_with_a_letter_or_digit(name: str, key: str) -> None:
    assert make_key(name) == key and KEY_RE.match(key)


def test_long_keys_stay_valid_and_stable() -> None:
    for name in ("_" * 200, "\u00e9" * 100, "a/" * 100 + "b", "x" * 80, "x" * 81):
        key = make_key(name)
        assert KEY_RE.match(key) and len(key) <= 80 and key == make_key(name), name
    assert make_key("x" * 80) == "x" * 80
    assert make_key("_" * 200).startswith("k___") and make_key("_" * 200) != make_key("_" * 199)


def test_folder_recursive_keys_and_origins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    write(tmp_path / "photos/a/b.jpg", data)
    write(tmp_path / "photos/c.d.JPEG", data)
    write(tmp_path / "photos/e f.Png", data)
    write(tmp_path / "photos/notes.txt", b"x")
    write(tmp_path / "photos/.hidden.jpg", data)
    write(tmp_path / "photos/.cache/z.jpg", data)
    items = list_items(["photos/"])
    assert [(i.key, i.origin) for i in items] == [
        ("a__b", "photos/a/b.jpg"),
        ("c_d", "photos/c.d.JPEG"),
        ("e_f", "photos/e f.Png"),
    ]
    assert items[0].load() == data


def test_webdataset_tar_and_sa1b_tar(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    make_tar(
        tmp_path / "wds.tar",
        {"d/k1.jpg": data, "d/k1.cls": b"3", "d/k2.png": data, "d/k3.txt": b"no image"},
        dirs=("d",),
    )
    make_tar(
        tmp_path / "sa_000000.tar", {"./sa_1.jpg": data, "./sa_1.json": b'{"annotations": []}'}
    )
    items = list_items(["wds.tar", "sa_000000.tar"])
    assert [(i.key, i.origin) for i in items] == [
        ("d__k1", "wds.tar:d/k1.jpg"),
        ("d__k2", "wds.tar:d/k2.png"),
        ("sa_1", "sa_000000.tar:./sa_1.jpg"),
    ]
    assert all(i.load() == data for i in items)


def test_glob_and_several_inputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    write(tmp_path / "set1/x/a.jpg", data)
    write(tmp_path / "set1/y/b.png", data)
    write(tmp_path / "set1/y/skip.txt", data)
    make_tar(tmp_path / "shards/s0.tar", {"t0.jpg": data})
    make_tar(tmp_path / "shards/s1.tar", {"t1.jpg": data})
    items = list_items(["set1/*/*", "shards/*.tar"])
    assert [(i.key, i.origin) for i in items] == [
        ("t0", "shards/s0.tar:t0.jpg"),
        ("t1", "shards/s1.tar:t1.jpg"),
        ("x__a", "set1/x/a.jpg"),
        ("y__b", "set1/y/b.png"),
    ]
    recursive = list_items(["set1/**/*.jpg"])
    assert [(i.key, i.origin) for i in recursive] == [("x__a", "set1/x/a.jpg")]


def test_duplicate_keys_name_both_origins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    write(tmp_path / "one/a.jpg", data)
    write(tmp_path / "two/a.png", data)
    with pytest.raises(ValueError, match="one/a.jpg and two/a.png") as err:
        list_items(["one", "two"])
    assert "rename one of the files" in str(err.value)
    write(tmp_path / "one/a.png", data)
    with pytest.raises(ValueError, match="one/a.jpg and one/a.png"):
        list_items(["one"])


def test_input_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--images missing: no such file"):
        input_items("missing")
    with pytest.raises(ValueError, match="matches nothing"):
        input_items("nothing/*.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--images empty: no images found"):
        input_items("empty")
    make_tar(tmp_path / "tars/a.tar", {"a.jpg": jpeg(gradient())})
    with pytest.raises(ValueError, match="--images 'tars/\\*.tar'"):
        input_items("tars")
    assert [i.key for i in input_items("tars/*.tar")] == ["a"]
    write(tmp_path / "x.tar.gz", b"\x1f\x8b")
    with pytest.raises(ValueError, match="decompress"):
        input_items("x.tar.gz")
    write(tmp_path / "bad.tar", b"garbage" * 100)
    [bad] = input_items("bad.tar")  # listed, to be rejected by prepare; never fatal
    assert (bad.key, bad.origin) == ("bad.tar", "bad.tar")
    with pytest.raises(tario.ShardError, match="bad.tar: not a readable uncompressed tar"):
        bad.load()


def test_truncated_tar_lists_intact_members_and_the_damage(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    full = make_tar(tmp_path / "t.tar", {"a.jpg": data, "b.jpg": data, "c.jpg": data})
    raw = full.read_bytes()
    b_start = 512 + -(-len(data) // 512) * 512 + 512  # a's header and padded data, b's header
    write(tmp_path / "cut.tar", raw[: b_start + len(data) // 2])
    items = tar_items("cut.tar")
    assert [(i.key, i.origin, bool(i.error)) for i in items] == [
        ("a", "cut.tar:a.jpg", False),
        ("cut.tar:b.jpg", "cut.tar:b.jpg", True),
    ]
    assert items[0].load() == data
    with pytest.raises(tario.ShardError, match="cut.tar: member 'b.jpg' is truncated") as err:
        items[1].load()
    assert "re-download the tar" in str(err.value)
    assert tar_items("cut.tar") == items  # deterministic


@pytest.mark.parametrize(
    ("cut", "what"), [("header", "is cut off"), ("garbage", "is corrupt")], ids=str
)
def test_damaged_header_after_a_member_is_reported(
    tmp_path: Path, monkeypatch, cut: str, what: str
) -> None:
    """tarfile stops listing silently at such a header; the damage must not go unnoticed."""
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    raw = make_tar(tmp_path / "t.tar", {"a.jpg": data, "b.jpg": data}).read_bytes()
    b_header = 512 + -(-len(data) // 512) * 512
    if cut == "header":
        damaged = raw[: b_header + 100]
    else:
        damaged = raw[:b_header] + b"x" * 512 + raw[b_header + 512 :]
    write(tmp_path / "d.tar", damaged)
    [good, bad] = tar_items("d.tar")
    assert (good.key, good.error) == ("a", "") and good.load() == data
    assert bad.origin == "d.tar"
    assert f"header at byte {b_header} (after member 'a.jpg') {what}" in bad.error
    assert "re-download the tar" in bad.error


def test_tar_ends_are_not_damage(tmp_path: Path) -> None:
    data = jpeg(gradient())
    raw = make_tar(tmp_path / "t.tar", {"a.jpg": data}).read_bytes()
    end = 512 + -(-len(data) // 512) * 512
    for n, tail in enumerate((raw, raw[:end], raw[: end + 700])):  # full, no end blocks, half
        write(tmp_path / f"{n}.tar", tail)
        assert [(i.key, i.error) for i in tar_items(str(tmp_path / f"{n}.tar"))] == [("a", "")]


def test_tar_with_unsafe_member_refused(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "evil.tar", {"../escape.jpg": jpeg(gradient())})
    with pytest.raises(tario.ShardError, match="unsafe member"):
        input_items(str(path))


# ---------------------------------------------------------------- shards


def write_demo_shard(path: Path) -> list[tuple[str, np.ndarray]]:
    photo = sample_array("chelsea")
    samples = [("k0", jpeg(photo)), ("k1", encode(Image.fromarray(gradient()), "PNG"))]
    expected = []
    with ImageShardWriter(path) as writer:
        for key, data in samples:
            result = prepare_image(data, f"in/{key}")
            assert isinstance(result, Accepted)
            writer.add(key, result.ext, result.data, f"in/{key}", result.height, result.width)
            expected.append((key, decode_rgb(result.data)))
    assert writer.count == 2 and len(writer.sha256) == 64
    return expected


def test_shard_roundtrip_and_deterministic_bytes(tmp_path: Path) -> None:
    expected = write_demo_shard(tmp_path / "a.tar")
    write_demo_shard(tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert shard_keys(tmp_path / "a.tar") == ["k0", "k1"]
    got = list(read_image_shard(tmp_path / "a.tar"))
    assert [k for k, _, _ in got] == ["k0", "k1"]
    for (key, rgb, meta), (_, want) in zip(got, expected, strict=True):
        assert np.array_equal(rgb, want)
        assert meta == {"origin": f"in/{key}", "size": list(want.shape[:2])}
    names = [m.name for m in tario.scan(tmp_path / "a.tar")]
    assert names == ["k0.jpg", "k0.json", "k1.png", "k1.json"]


def test_webdataset_reads_image_shards(tmp_path: Path) -> None:
    expected = dict(write_demo_shard(tmp_path / "000000.tar"))
    dataset = wds.WebDataset(str(tmp_path / "000000.tar"), shardshuffle=False).decode("rgb8")
    samples = list(dataset)
    assert [s["__key__"] for s in samples] == ["k0", "k1"]
    for s in samples:
        image = s.get("jpg", s.get("png"))
        assert image.dtype == np.uint8 and np.array_equal(image, expected[s["__key__"]])
        assert s["json"]["size"] == list(image.shape[:2])


def test_failed_shard_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "000000.tar"
    with pytest.raises(RuntimeError), ImageShardWriter(path) as writer:
        writer.add("k", "png", b"x", "o", 1, 1)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_reader_validates_members(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "bad.tar", {"k.jpg": jpeg(gradient())})
    with pytest.raises(tario.ShardError, match="exactly one"):
        list(read_image_shard(path))
    meta = b'{"origin": "o", "size": [5, 5]}'
    path = make_tar(tmp_path / "bad2.tar", {"k.jpg": jpeg(gradient()), "k.json": meta})
    with pytest.raises(tario.ShardError, match="decodes to 128x96"):
        list(read_image_shard(path))
