"""Benchmark the world renderer: images/s per core at photo size (1500 x 2250 by default).

    pipeline bench world-render [--images 3] [--repeats 3] [--height 1500 --width 2250]
                                   [--samples 1] [--json]

Renders train scenes 0..N-1 of seed 0 in this process (one core: numpy's element-wise maths is
single-threaded), `repeats` times, and times each pass two ways: CPU time of this process
(`time.process_time`, what a core spends; robust on a shared machine) and wall time. Reports the
medians over the repeats, for the render alone and for render + encoding the files
`pipeline world render` writes (PNG, depth and mask .npy), as a Markdown table row.
"""

from __future__ import annotations

import json
import statistics
import time

from pipeline.bench import parser as bench_parser
from pipeline.images.decode import encode_png
from pipeline.world.files import PNG_COMPRESS_LEVEL, encode_npy
from pipeline.world.generate import DEFAULT_HEIGHT, DEFAULT_WIDTH, make_scene
from pipeline.world.render import render

HEADER = (
    "| world render | images/s per core: render | render + encode | CPU s/image | wall s/image |\n"
    "|---|---|---|---|---|"
)


def one_pass(images: int, height: int, width: int, samples: int) -> dict[str, float]:
    """CPU and wall seconds of rendering (and of encoding) scenes 0..images-1 once."""
    out = {"render_cpu": 0.0, "encode_cpu": 0.0, "render_wall": 0.0}
    for index in range(images):
        scene = make_scene(0, "train", index, height, width)
        cpu, wall = time.process_time(), time.perf_counter()
        view = render(scene, height, width, samples=samples)
        out["render_cpu"] += time.process_time() - cpu
        out["render_wall"] += time.perf_counter() - wall
        cpu = time.process_time()
        encode_png(view.rgb, PNG_COMPRESS_LEVEL)
        encode_npy(view.depth)
        encode_npy(view.valid)
        out["encode_cpu"] += time.process_time() - cpu
    return out


def run(images: int, repeats: int, height: int, width: int, samples: int) -> dict:
    """Medians over `repeats` passes, per image."""
    passes = [one_pass(images, height, width, samples) for _ in range(repeats)]

    def per_image(key: str) -> float:
        return statistics.median(p[key] for p in passes) / images

    def both(p: dict) -> float:
        return p["render_cpu"] + p["encode_cpu"]

    render_cpu = per_image("render_cpu")
    total_cpu = statistics.median(both(p) for p in passes) / images
    return {
        "height": height,
        "width": width,
        "samples": samples,
        "images": images,
        "repeats": repeats,
        "render_cpu_s_per_image": round(render_cpu, 3),
        "render_wall_s_per_image": round(per_image("render_wall"), 3),
        "render_images_per_s_per_core": round(1.0 / render_cpu, 3),
        "with_encode_images_per_s_per_core": round(1.0 / total_cpu, 3),
    }


def markdown_row(r: dict) -> str:
    what = f"{r['height']}x{r['width']}, samples {r['samples']}, median of {r['repeats']}"
    return (
        f"| {what} | {r['render_images_per_s_per_core']:.3f} | "
        f"{r['with_encode_images_per_s_per_core']:.3f} | {r['render_cpu_s_per_image']:.2f} | "
        f"{r['render_wall_s_per_image']:.2f} |"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--images", type=int, default=3, help="scenes per pass (3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; median (3)")
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument("--samples", type=int, default=1, help="colour rays per pixel side")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if min(args.images, args.repeats, args.height, args.width, args.samples) < 1:
        parser.error("--images, --repeats, --height, --width and --samples must be ≥ 1")
    result = run(args.images, args.repeats, args.height, args.width, args.samples)
    print(json.dumps(result) if args.json else f"{HEADER}\n{markdown_row(result)}")
    return result


if __name__ == "__main__":
    main()
