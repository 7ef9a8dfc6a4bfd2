"""Label codec benchmark on depth-like maps: size, error and single-thread speed.

    pipeline bench codecs [--repeats 5]
    pipeline bench codecs --metric [--images 4] [--height 1125 --width 1500] [--smoke]

Maps (float32, positive): the Middlebury "Motorcycle" ground-truth disparity shipped with
scikit-image (invalid +inf pixels replaced by the nearest valid value), synthetic scenes (floor,
wall and spheres with mild noise) at 560×560 and 1500×2000, and a teacher-like map (a smooth
420×560 map bilinearly upsampled to 560×746). Speeds are MB/s of float32 input, median of
`repeats`. The generators are reused by the tests.

`--metric`: metric depth labels in metres, from the world's exact depth (`pipeline world render`'s
scenes, rendered here: rays that hit nothing are +inf, as `pipeline world labels` stores them) at
the image size and as 560x560 native tiles (the centre crop), against a log-depth candidate that
is not a registered codec: ln(depth) quantised to uint16 in steps of 2·ln(1 + r) from the map's
smallest depth (so a relative error ≤ r everywhere), compressed with the same PCodec. Errors are
over the finite pixels; rows per map and a mean per encoding.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import numcodecs
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


class LogU16:
    """The log-depth candidate (module docstring): positive depth (+inf and NaN kept) as
    uint16 codes of ln(depth) with relative error ≤ `rel_error`, PCodec level 8. A 16-byte
    header holds the base depth and the step."""

    NAN, INF = 65535, 65534
    LEVELS = 65533  # codes 0..65533 are depths

    def __init__(self, rel_error: float) -> None:
        self.rel_error = rel_error
        self.step = 2.0 * float(np.log1p(rel_error))
        self.name = f"log-u16 r={rel_error:.1e}"
        self._codec = numcodecs.PCodec(level=8)

    def encode(self, arr: np.ndarray) -> bytes:
        a = np.asarray(arr, dtype=np.float64)
        finite = np.isfinite(a)
        if (a[finite] <= 0).any() or np.isneginf(a).any():
            raise ValueError(f"{self.name}: depth must be positive")
        base = float(a[finite].min()) if finite.any() else 1.0
        codes = np.full(a.shape, self.NAN, dtype=np.uint16)
        codes[np.isposinf(a)] = self.INF
        q = np.round(np.log(a[finite] / base) / self.step)
        if q.size and q.max() > self.LEVELS:
            raise ValueError(f"{self.name}: the map spans more than uint16 codes hold")
        codes[finite] = q.astype(np.uint16)
        return struct.pack("<dd", base, self.step) + bytes(self._codec.encode(codes))

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        base, step = struct.unpack("<dd", data[:16])
        codes = np.frombuffer(self._codec.decode(data[16:]), dtype=np.uint16).reshape(shape)
        out = np.where(codes == self.INF, np.float32(np.inf), np.float32(np.nan))
        depth = codes <= self.LEVELS
        out[depth] = base * np.exp(codes[depth].astype(np.float64) * step)
        return out


# f16's max relative error (2^-11), half of it, and about f16's median error on depth maps
LOG_CANDIDATES = (2.0**-11, 2.0**-12, 1.7e-4)


def world_depth_maps(images: int, height: int, width: int, tile: int = 560) -> dict:
    """`{name: depth in metres}`: train scenes 0..images-1 of seed 0 rendered at `height` x
    `width` (+inf where no surface is hit), and each one's centre `tile` x `tile` crop."""
    from pipeline.world.generate import make_scene
    from pipeline.world.render import render

    maps = {}
    for index in range(images):
        view = render(make_scene(0, "train", index, height, width), height, width)
        depth = np.where(view.valid, view.depth, np.inf).astype(np.float32)
        maps[f"world {index} {height}×{width}"] = depth
        if min(height, width) >= tile:
            y, x = (height - tile) // 2, (width - tile) // 2
            crop = np.ascontiguousarray(depth[y : y + tile, x : x + tile])
            maps[f"world {index} tile {tile}²"] = crop
    return maps


def bench_metric_one(codec, arr: np.ndarray, repeats: int) -> dict:
    """Size, relative error over the finite pixels (max, median) and speeds of `codec`."""
    data = codec.encode(arr)
    out = codec.decode(data, arr.shape)
    finite = np.isfinite(arr)
    same = np.array_equal(np.isposinf(out), np.isposinf(arr))
    if not same:
        raise AssertionError(f"{codec.name}: +inf pixels were not kept")
    truth = arr[finite].astype(np.float64)
    rel = np.abs(out[finite].astype(np.float64) - truth) / truth
    mb = arr.size * 4 / 1e6
    return {
        "codec": codec.name,
        "bytes_per_pixel": len(data) / arr.size,
        "max_rel_error": float(rel.max()),
        "median_rel_error": float(np.median(rel)),
        "encode_mb_s": mb / _median_seconds(lambda: codec.encode(arr), repeats),
        "decode_mb_s": mb / _median_seconds(lambda: codec.decode(data, arr.shape), repeats),
    }


def run_metric_bench(images: int, height: int, width: int, repeats: int = 3) -> list[dict]:
    """One row per (encoding, world map): the registered codecs, then the log candidates."""
    numcodecs.blosc.set_nthreads(1)
    codecs = [get_codec(name) for name in CODECS.names()]
    codecs += [LogU16(r) for r in LOG_CANDIDATES]
    maps = world_depth_maps(images, height, width)
    return [
        {"map": name, **bench_metric_one(codec, arr, repeats)}
        for codec in codecs
        for name, arr in maps.items()
    ]


def metric_summary(rows: list[dict]) -> list[dict]:
    """Per encoding: mean B/px over the maps, the largest max error and the median of the
    per-map median errors."""
    out = []
    for codec in dict.fromkeys(r["codec"] for r in rows):
        mine = [r for r in rows if r["codec"] == codec]
        out.append(
            {
                "codec": codec,
                "maps": len(mine),
                "bytes_per_pixel": float(np.mean([r["bytes_per_pixel"] for r in mine])),
                "max_rel_error": max(r["max_rel_error"] for r in mine),
                "median_rel_error": float(np.median([r["median_rel_error"] for r in mine])),
                "encode_mb_s": float(np.median([r["encode_mb_s"] for r in mine])),
                "decode_mb_s": float(np.median([r["decode_mb_s"] for r in mine])),
            }
        )
    return out


def metric_tables(rows: list[dict]) -> str:
    head = "| {} | B/px | max rel err | median rel err | encode MB/s | decode MB/s |"
    sep = "|---|---:|---:|---:|---:|---:|"

    def line(first: str, r: dict) -> str:
        return (
            f"| {first} | {r['bytes_per_pixel']:.3f} | {r['max_rel_error']:.2e} | "
            f"{r['median_rel_error']:.2e} | {r['encode_mb_s']:.0f} | {r['decode_mb_s']:.0f} |"
        )

    summary = [head.format("codec (mean over maps)"), sep]
    summary += [line(f"{r['codec']} ({r['maps']} maps)", r) for r in metric_summary(rows)]
    detail = [head.format("map, codec"), sep]
    detail += [line(f"{r['map']}, {r['codec']}", r) for r in rows]
    return "\n".join(summary) + "\n\n" + "\n".join(detail)


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
    parser.add_argument(
        "--metric", action="store_true", help="metric depth labels of the world: log vs float16"
    )
    parser.add_argument("--images", type=int, default=4, help="--metric: world images")
    parser.add_argument("--height", type=int, default=1125, help="--metric: image height")
    parser.add_argument("--width", type=int, default=1500, help="--metric: image width")
    parser.add_argument("--smoke", action="store_true", help="--metric: one tiny image, 1 repeat")
    args = parser.parse_args(argv)
    if not args.metric:
        print(markdown_table(run_codec_bench(args.repeats)))
        return
    if args.smoke:
        args.images, args.height, args.width, args.repeats = 1, 48, 64, 1
    print(metric_tables(run_metric_bench(args.images, args.height, args.width, args.repeats)))


if __name__ == "__main__":
    main()
