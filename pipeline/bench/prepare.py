"""Benchmark `pipeline prepare` against a bare PIL decode of the same photo-sized JPEGs.

    pipeline bench prepare [--images 48] [--repeats 3] [--json]

Builds N JPEGs of 2250x1500 pixels (SA-1B size; quality 90) from the bundled scikit-image
photos, then times, on one core:

- `decode`: a bare PIL decode, `Image.open(f).load()` (the files are RGB: no conversion needed);
- `decode+convert`: `Image.open(f).convert("RGB")`, which also copies the decoded image;
- `prepare` with one worker (in-process read, full decode to validate, tar writing, SHA-256,
  crop plan, fsync and atomic renames, dataset.json).

Reports the median images/s over the repeats and the ratio of `prepare` to each baseline (the
share of a bare decode's speed that `prepare` keeps).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.bench import parser as bench_parser
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.images.photos import SAMPLES, sample_array

PHOTO_SIZE = (2250, 1500)  # width, height of a typical SA-1B image
QUALITY = 90


def make_photos(folder: Path, count: int) -> list[Path]:
    """`count` distinct photo-sized baseline JPEGs made from the bundled colour photos."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [n for n in SAMPLES if sample_array(n).ndim == 3]
    bases = [Image.fromarray(sample_array(n)).resize(PHOTO_SIZE, Image.BICUBIC) for n in names]
    paths = []
    for i in range(count):
        img = bases[i % len(bases)]
        variant = i // len(bases)
        if variant % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if variant >= 2:  # shift the content so no two files are the same
            img = Image.fromarray(np.roll(np.asarray(img), 37 * variant, axis=1))
        path = folder / f"photo_{i:04d}.jpg"
        img.save(path, format="JPEG", quality=QUALITY)
        paths.append(path)
    return paths


def time_bare_decode(paths: list[Path], convert: bool) -> float:
    """Seconds to open and decode every file with PIL alone (`convert`: also `.convert("RGB")`)."""
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            if convert:
                img.convert("RGB")
            else:
                img.load()
    return time.perf_counter() - start


def time_prepare(folder: Path, out: Path) -> float:
    """Seconds for `prepare` with one worker into a fresh directory."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    prepare([str(folder)], out, PrepareSettings(), progress=False, workers=1)
    return time.perf_counter() - start


def run(count: int, repeats: int, workdir: Path) -> dict[str, float]:
    """Median images/s on one core of the two bare decodes and of `prepare`, and the ratios."""
    folder = workdir / "photos"
    paths = make_photos(folder, count)
    time_bare_decode(paths, convert=False)  # warm the page cache and the decoder
    decode, convert, prep = [], [], []
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit all three alike
        decode.append(time_bare_decode(paths, convert=False))
        convert.append(time_bare_decode(paths, convert=True))
        prep.append(time_prepare(folder, workdir / "dataset"))
    rates = {
        "decode": count / statistics.median(decode),
        "decode+convert": count / statistics.median(convert),
        "prepare": count / statistics.median(prep),
    }
    return {
        "images": count,
        "repeats": repeats,
        **{f"{name}_images_per_s": round(rate, 2) for name, rate in rates.items()},
        "ratio_to_decode": round(rates["prepare"] / rates["decode"], 3),
        "ratio_to_decode+convert": round(rates["prepare"] / rates["decode+convert"], 3),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--images", type=int, default=48, help="photos to generate (48)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; median (3)")
    parser.add_argument("--workdir", type=Path, help="where to write (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be ≥ 1")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        result = run(args.images, args.repeats, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        w, h = PHOTO_SIZE
        print(f"{args.images} JPEGs {w}x{h} q{QUALITY}, 1 core, median of {args.repeats}:")
        for name in ("decode", "decode+convert", "prepare"):
            print(f"  {name:<16}{result[f'{name}_images_per_s']:8.2f} images/s")
        print(f"  prepare / decode          {result['ratio_to_decode']:.3f}")
        print(f"  prepare / decode+convert  {result['ratio_to_decode+convert']:.3f}")
    return result


if __name__ == "__main__":
    main()
