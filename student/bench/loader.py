"""Loader throughput vs bare image decode: `pipeline bench loader DATASET --teacher NAME`.

Prints, for each worker count, the loader's samples/s (and per worker) next to the bare
`decode_rgb` rate of the same images on one core, the ceiling of one worker.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.bench import parser as bench_parser
from pipeline.dataset import DatasetInfo
from pipeline.dataset.info import as_dataset
from pipeline.images.decode import decode_rgb
from pipeline.images.shards import ImageShardReader
from pipeline.toolkit.cpus import usable_cpus
from student.config import MODES, DataSettings
from student.data.loader import make_loader
from student.data.stream import DistillStream


def bench_loader(
    dataset: DatasetInfo | Path | str,
    teachers: Sequence[str],
    workers: int,
    batches: int,
    data: DataSettings | None = None,
    *,
    batch_size: int = 4,
) -> float:
    """Samples per second of the full loader (decode + crops + labels + augmentation + collate)
    of the stream of `data` (None: the defaults) over `batches` batches after a first warm-up
    batch (worker start-up excluded; `data.workers` is not used: `workers` is). With `workers=0`
    everything runs in this process on one torch thread."""
    stream = DistillStream(dataset, teachers, data, batch_size=batch_size, rank=0, world=1)
    batches = min(batches, len(stream) - 1)
    if batches < 1:
        raise ValueError(f"the dataset gives {len(stream)} batches; need at least 2 to time")
    threads = torch.get_num_threads()
    if workers == 0:
        torch.set_num_threads(1)  # measure one core, as a worker (DataLoader workers use 1)
    try:
        it = iter(make_loader(stream, workers=workers, pin_memory=False))
        next(it)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        elapsed = time.perf_counter() - start
        del it
    finally:
        torch.set_num_threads(threads)
    return batches * batch_size / elapsed


def image_bytes(dataset: DatasetInfo | Path | str, count: int) -> list[bytes]:
    """The stored bytes of the first `count` images of the dataset, in shard order."""
    info = as_dataset(dataset)
    out: list[bytes] = []
    for shard in info.shards:
        with ImageShardReader(info.layout.image_shard(shard.index)) as reader:
            for key in reader.keys:
                out.append(reader.read(key)[0])
                if len(out) == count:
                    return out
    return out


def bench_decode(dataset: DatasetInfo | Path | str, samples: int) -> float:
    """Images per second of the bare decode (`decode_rgb`) of the same images, in this process
    (one core), bytes read beforehand: the ceiling of one loader worker."""
    data = image_bytes(dataset, samples)
    if not data:
        raise ValueError("the dataset has no images")
    start = time.perf_counter()
    for blob in data:
        decode_rgb(blob)
    return len(data) / (time.perf_counter() - start)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__name__, __doc__)
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
    print(f"bare decode (1 core): {decode:.1f} images/s; usable cpus: {usable_cpus()}")
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
