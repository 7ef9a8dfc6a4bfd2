"""Label codecs: registry, size and error on depth-like maps, float16 range handling."""

from __future__ import annotations

import numpy as np
import pytest
from label_helpers import middlebury

from pipeline.bench.codecs import synthetic_scene, teacher_like
from pipeline.labels.codecs import CODECS, DEFAULT_CODEC, codec_from_description, get_codec

F16_CODECS = ["pcodec-f16", "blosc-zstd-f16"]


def depth_maps() -> dict[str, np.ndarray]:
    return {
        "middlebury": middlebury(),
        "planes+spheres": synthetic_scene(560, 560, seed=4, noise=0.0),
        "planes+spheres, noisy": synthetic_scene(300, 400, seed=5),
        "teacher-like": teacher_like(seed=6),
    }


def test_codecs_are_registered_by_name_and_refuse_bad_parameters():
    assert CODECS.names() == ["blosc-zstd-f16", "pcodec-f16", "pcodec-f32"]
    assert DEFAULT_CODEC == "pcodec-f16" and get_codec().name == "pcodec-f16"
    with pytest.raises(ValueError, match="valid: blosc-zstd-f16, pcodec-f16, pcodec-f32"):
        get_codec("png16")
    with pytest.raises(ValueError, match="bad parameters"):
        get_codec("pcodec-f16", clevel=3)
    with pytest.raises(ValueError, match="level must be"):
        get_codec("pcodec-f16", level=99)


@pytest.mark.parametrize("name", CODECS.names())
def test_description_rebuilds_the_same_codec(name):
    codec = get_codec(name)
    again = codec_from_description(codec.describe(), "manifest")
    assert type(again) is type(codec) and again.params == codec.params
    kwargs = codec.zarr_kwargs()
    assert kwargs["dtype"] == codec.storage_dtype.name and {"serializer", "compressors"} <= set(
        kwargs
    )


@pytest.mark.parametrize("scene", list(depth_maps()))
def test_pcodec_f16_size_and_error_on_depth_maps(scene):
    depth = depth_maps()[scene]
    codec = get_codec("pcodec-f16")
    data = codec.encode(depth)
    decoded = codec.decode(data, depth.shape)
    assert len(data) / depth.size <= 0.45, scene
    assert (np.abs(decoded - depth) / np.abs(depth)).max() <= 1e-3, scene


def test_pcodec_f32_is_lossless_including_specials():
    depth = middlebury().copy()
    depth[0, :3] = [np.nan, np.inf, -np.inf]
    codec = get_codec("pcodec-f32")
    decoded = codec.decode(codec.encode(depth), depth.shape)
    np.testing.assert_array_equal(decoded, depth)
    assert len(codec.encode(depth)) < depth.nbytes / 1.9


@pytest.mark.parametrize("name", F16_CODECS)
def test_float16_clips_finite_values_and_keeps_specials(name):
    arr = np.array([[1e6, -1e6, 65504.0, 7e4], [np.inf, -np.inf, np.nan, 3.0]], np.float32)
    codec = get_codec(name)
    out = codec.decode(codec.encode(arr), arr.shape)
    np.testing.assert_array_equal(out[0], [65504.0, -65504.0, 65504.0, 65504.0])
    assert np.isposinf(out[1, 0]) and np.isneginf(out[1, 1]) and np.isnan(out[1, 2])
    assert out[1, 3] == 3.0


def test_bad_input_and_corrupt_payload():
    codec = get_codec()
    with pytest.raises(ValueError, match="2-D"):
        codec.encode(np.zeros((2, 3, 4), np.float32))
    data = codec.encode(np.ones((8, 8), np.float32))
    with pytest.raises(ValueError, match="expected 100"):
        codec.decode(data, (10, 10))
    with pytest.raises(ValueError, match="pcodec-f16"):
        codec.decode(b"\x00garbage" * 10, (8, 8))
