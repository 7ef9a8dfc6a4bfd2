"""Loader throughput vs bare image decode: `python -m student.data.bench DATASET --teacher NAME`.

Prints, for each worker count, the loader's samples/s (and per worker) next to the bare
`decode_rgb` rate of the same images on one core, the ceiling of one worker.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from student.config import MODES, DataSettings
from student.data.loader import bench_decode, bench_loader


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m student.data.bench", description=__doc__)
    p.add_argument("dataset", help="a prepared dataset directory with label columns")
    p.add_argument("--teacher", action="append", required=True, help="label column; repeatable")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts")
    p.add_argument("--batches", type=int, default=10, help="timed batches per worker count")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--size", type=int, default=560, help="student input side S")
    p.add_argument("--mode", choices=MODES, default=MODES[0])
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    decode = bench_decode(args.dataset, max(8, args.batches * args.batch_size))
    print(f"bare decode (1 core): {decode:.1f} images/s; cpus: {os.cpu_count()}")
    print(f"{'workers':>7} {'samples/s':>10} {'per worker':>10} {'vs decode':>9}")
    for workers in args.workers:
        rate = bench_loader(
            args.dataset,
            args.teacher,
            workers,
            args.batches,
            DataSettings(mode=args.mode, size=args.size),
            batch_size=args.batch_size,
        )
        per = rate / max(workers, 1)
        print(f"{workers:>7} {rate:>10.1f} {per:>10.1f} {per / decode:>8.0%}")


if __name__ == "__main__":
    main()
