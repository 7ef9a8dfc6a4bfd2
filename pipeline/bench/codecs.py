"""Label codec benchmark on depth-like maps: size, error and single-thread speed.

    pipeline bench codecs [--repeats 5]

Maps (float32, positive): the Middlebury "Motorcycle" ground-truth disparity shipped with
scikit-image (invalid +inf pixels replaced by the nearest valid value), synthetic scenes (floor,
wall and spheres with mild noise) at 560×560 and 1500×2000, and a teacher-like map (a smooth
420×560 map bilinearly upsampled to 560×746). Speeds are MB/s of float32 input, median of
`repeats`. The generators are reused by the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from pipeline.bench import parser as bench_parser
from pipeline.labels.codecs import CODECS, get_codec


def middlebury_disparity() -> np.ndarray:
    """Middlebury Motorcycle disparity (500, 741) float32, +inf holes filled by nearest valid."""
    from scipy import ndimage
    from skimage.data import stereo_motorcycle

    disp = np.asarray(stereo_motorcycle()[2], dtype=np.float32)
    invalid = ~np.isfinite(disp)
    idx = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return np.ascontiguousarray(disp[tuple(idx)])


def synthetic_scene(h: int, w: int, seed: int = 0, noise: float = 1e-3) -> np.ndarray:
    """Depth (h, w) float32 in metres of a room: floor, tilted back wall, a few spheres."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = (y - h / 2) / h, (x - w / 2) / h  # image-plane coordinates, focal length 1
    wall = rng.uniform(6, 10) * (1 + rng.uniform(-0.3, 0.3) * x)
    below = np.maximum(y - rng.uniform(-0.2, 0.0), 1e-6)
    depth = np.minimum(wall, rng.uniform(1.2, 1.8) / below)  # floor at camera height 1.2-1.8 m
    for _ in range(rng.integers(2, 5)):
        cx, cy = rng.uniform(-0.5, 0.5) * w / h, rng.uniform(-0.3, 0.3)
        r, z = rng.uniform(0.05, 0.2), rng.uniform(2, 5)
        d2 = ((x - cx) ** 2 + (y - cy) ** 2) / r**2
        inside = d2 < 1
        surface = z - r * z * np.sqrt(np.clip(1 - d2, 0, 1))
        depth = np.where(inside, np.minimum(depth, surface), depth)
    depth *= 1 + noise * rng.standard_normal(depth.shape)
    return depth.astype(np.float32)


def teacher_like(seed: int = 0) -> np.ndarray:
    """A smooth 420×560 disparity map bilinearly upsampled to (560, 746), like a ViT output."""
    from scipy import ndimage
    from skimage.transform import resize

    low = ndimage.gaussian_filter(1.0 / synthetic_scene(420, 560, seed, noise=0.0), 2.0)
    return resize(low, (560, 746), order=1, anti_aliasing=False).astype(np.float32)


def bench_maps() -> dict[str, np.ndarray]:
    return {
        "middlebury 500×741": middlebury_disparity(),
        "synthetic 560×560": synthetic_scene(560, 560, seed=1),
        "synthetic 1500×2000": synthetic_scene(1500, 2000, seed=2),
        "teacher-like 560×746": teacher_like(seed=3),
    }


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _raw_codec() -> tuple[Callable, Callable]:
    def encode(a: np.ndarray) -> bytes:
        return np.ascontiguousarray(a, dtype=np.float32).tobytes()

    def decode(b: bytes, shape: tuple[int, int]) -> np.ndarray:
        return np.frombuffer(b, dtype=np.float32).reshape(shape).copy()

    return encode, decode


def bench_one(name: str, arr: np.ndarray, repeats: int) -> dict:
    """Size, relative error and speeds of codec `name` ('float32-raw' or registered) on `arr`."""
    if name == "float32-raw":
        encode, decode = _raw_codec()
    else:
        codec = get_codec(name)
        encode, decode = codec.encode, codec.decode
    data = encode(arr)
    out = decode(data, arr.shape)
    rel = np.abs(out.astype(np.float64) - arr) / np.abs(arr.astype(np.float64))
    mb = arr.size * 4 / 1e6
    return {
        "codec": name,
        "bytes_per_pixel": len(data) / arr.size,
        "max_rel_error": float(rel.max()),
        "mean_rel_error": float(rel.mean()),
        "encode_mb_s": mb / _median_seconds(lambda: encode(arr), repeats),
        "decode_mb_s": mb / _median_seconds(lambda: decode(data, arr.shape), repeats),
    }


def run_codec_bench(repeats: int = 5) -> list[dict]:
    """One row per (codec, map), float32 raw first as the reference; single-threaded."""
    import numcodecs.blosc

    numcodecs.blosc.set_nthreads(1)
    rows = []
    for map_name, arr in bench_maps().items():
        for codec in ["float32-raw", *CODECS.names()]:
            rows.append({"map": map_name, **bench_one(codec, arr, repeats)})
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = "| map | codec | B/px | max rel err | mean rel err | encode MB/s | decode MB/s |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['map']} | {r['codec']} | {r['bytes_per_pixel']:.3f} | "
            f"{r['max_rel_error']:.1e} | {r['mean_rel_error']:.1e} | "
            f"{r['encode_mb_s']:.0f} | {r['decode_mb_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (median)")
    args = parser.parse_args(argv)
    print(markdown_table(run_codec_bench(args.repeats)))


if __name__ == "__main__":
    main()
