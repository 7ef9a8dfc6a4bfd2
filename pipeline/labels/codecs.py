"""Codecs for label maps: a 2-D float32 map <-> compressed bytes, plus the matching Zarr codecs.

Every codec has a `storage_dtype` (float16 or float32). Casting to float16 clips finite values
beyond ±65504 to the float16 maximum instead of letting them become ±inf; `record.map_stats`
counts those values (`clipped`) so the loss of range is recorded, never silent. NaN and ±inf
are stored as they are.

Registered codecs (`CODECS.names()`):

| name | storage | compression | error |
|---|---|---|---|
| `pcodec-f16` (default) | float16 | numcodecs PCodec level 8 | ≤ 4.9e-4 relative |
| `blosc-zstd-f16` | float16 | Blosc zstd clevel 1, bitshuffle | ≤ 4.9e-4 relative |
| `pcodec-f32` | float32 | numcodecs PCodec level 8 | lossless |
"""

from __future__ import annotations

import warnings
from typing import Any

import numcodecs
import numpy as np

from pipeline.toolkit.registry import Registry

DEFAULT_CODEC = "pcodec-f16"


class Codec:
    """Base class. Subclasses set `name`, `ext`, `storage_dtype` and implement the byte codec."""

    name: str = ""
    ext: str = ""  # member extension in tar shards: lower case, no dots
    storage_dtype: np.dtype = np.dtype(np.float32)

    @property
    def params(self) -> dict[str, Any]:
        """JSON-able parameters; `get_codec(name, **params)` rebuilds the same codec."""
        return {}

    def describe(self) -> dict[str, Any]:
        """`{"name", "params", "storage_dtype"}` as recorded in shard metadata and manifests."""
        return {"name": self.name, "params": self.params, "storage_dtype": self.storage_dtype.name}

    def to_storage(self, arr: np.ndarray) -> np.ndarray:
        """Cast a map to `storage_dtype`, clipping finite out-of-range values (not ±inf, NaN)."""
        arr = np.asarray(arr)
        if arr.dtype == self.storage_dtype:  # e.g. float16 teacher output: no round trip
            return np.ascontiguousarray(arr)
        arr = np.asarray(arr, dtype=np.float32)
        if self.storage_dtype == np.float32:
            return np.ascontiguousarray(arr)
        limit = float(np.finfo(self.storage_dtype).max)
        over = np.abs(arr) > limit  # NaN compares False
        over &= np.isfinite(arr)  # ±inf stays ±inf
        if over.any():
            arr = np.where(over, np.copysign(limit, arr), arr)
        return np.ascontiguousarray(arr.astype(self.storage_dtype))

    def encode(self, arr: np.ndarray) -> bytes:
        """Encode one 2-D map (H, W), any float dtype, to bytes (shape is not included)."""
        if np.ndim(arr) != 2:
            raise ValueError(f"codec {self.name}: expected a 2-D map, got shape {np.shape(arr)}")
        return self._encode(self.to_storage(arr))

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """Decode bytes from `encode` back to a float32 array of `shape` (H, W)."""
        flat = np.frombuffer(self._decode(data), dtype=self.storage_dtype)
        count = int(np.prod(shape))
        if flat.size != count:
            raise ValueError(
                f"codec {self.name}: payload holds {flat.size} values, expected {count} "
                f"for shape {tuple(shape)}; the data is corrupt"
            )
        return flat.reshape(shape).astype(np.float32)

    def zarr_kwargs(self) -> dict[str, Any]:
        """`dtype`, `serializer` and `compressors` for `zarr.create_array`."""
        raise NotImplementedError

    def _encode(self, storage: np.ndarray) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes) -> bytes | np.ndarray:
        raise NotImplementedError


def _zarr_numcodecs():
    """zarr's numcodecs wrappers, imported lazily (zarr warns that they are outside the spec)."""
    import zarr.codecs.numcodecs as zn

    return zn


class _PCodecBase(Codec):
    def __init__(self, level: int = 8) -> None:
        if not (isinstance(level, int) and 0 <= level <= 12):
            raise ValueError(f"codec {self.name}: level must be an int in 0..12, got {level!r}")
        self.level = level
        self._codec = numcodecs.PCodec(level=level)

    @property
    def params(self) -> dict[str, Any]:
        return {"level": self.level}

    def _encode(self, storage: np.ndarray) -> bytes:
        return bytes(self._codec.encode(storage))

    def _decode(self, data: bytes) -> np.ndarray:
        try:
            return self._codec.decode(data)
        except Exception as e:  # pcodec raises RuntimeError subclasses from Rust
            raise ValueError(f"codec {self.name}: cannot decode payload ({e})") from e

    def zarr_kwargs(self) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            serializer = _zarr_numcodecs().PCodec(level=self.level)
        return {"dtype": self.storage_dtype.name, "serializer": serializer, "compressors": None}


CODECS: Registry[type[Codec]] = Registry("codec")


@CODECS.register("pcodec-f16")
class PCodecF16(_PCodecBase):
    """float16 + PCodec: ~0.4 B/pixel on depth maps, relative error ≤ 2^-11."""

    name = "pcodec-f16"
    ext = "pcf16"
    storage_dtype = np.dtype(np.float16)


@CODECS.register("pcodec-f32")
class PCodecF32(_PCodecBase):
    """float32 + PCodec: lossless, 1-2 B/pixel."""

    name = "pcodec-f32"
    ext = "pcf32"
    storage_dtype = np.dtype(np.float32)


@CODECS.register("blosc-zstd-f16")
class BloscZstdF16(Codec):
    """float16 + Blosc(zstd, bitshuffle): faster to encode than PCodec, ~0.6 B/pixel."""

    name = "blosc-zstd-f16"
    ext = "bzf16"
    storage_dtype = np.dtype(np.float16)

    def __init__(self, clevel: int = 1) -> None:
        if not (isinstance(clevel, int) and 0 <= clevel <= 9):
            raise ValueError(f"codec {self.name}: clevel must be an int in 0..9, got {clevel!r}")
        self.clevel = clevel
        self._codec = numcodecs.Blosc(
            cname="zstd", clevel=clevel, shuffle=numcodecs.Blosc.BITSHUFFLE
        )

    @property
    def params(self) -> dict[str, Any]:
        return {"clevel": self.clevel}

    def _encode(self, storage: np.ndarray) -> bytes:
        return bytes(self._codec.encode(storage))

    def _decode(self, data: bytes) -> bytes:
        try:
            return self._codec.decode(data)
        except Exception as e:
            raise ValueError(f"codec {self.name}: cannot decode payload ({e})") from e

    def zarr_kwargs(self) -> dict[str, Any]:
        from zarr.codecs import BloscCodec

        compressor = BloscCodec(
            cname="zstd", clevel=self.clevel, shuffle="bitshuffle", typesize=2, blocksize=0
        )
        return {"dtype": self.storage_dtype.name, "serializer": "auto", "compressors": compressor}


def get_codec(name: str = DEFAULT_CODEC, **params: Any) -> Codec:
    """Build a registered codec; unknown names or parameters raise `ValueError`."""
    factory = CODECS.get(name)
    try:
        return factory(**params)
    except TypeError as e:
        raise ValueError(f"codec {name!r}: bad parameters {params} ({e})") from e


def codec_from_description(desc: dict[str, Any], where: str) -> Codec:
    """Rebuild a codec from `Codec.describe()` output read from `where` (a shard or manifest)."""
    if not isinstance(desc, dict) or not isinstance(desc.get("name"), str):
        raise ValueError(f"{where}: codec description {desc!r} is missing a name")
    try:
        return get_codec(desc["name"], **desc.get("params", {}))
    except ValueError as e:
        raise ValueError(f"{where}: {e}; upgrade the pipeline or re-create this shard") from e
