"""Training-step benchmark: real shards through the loader vs the same step on an in-memory
batch (data stall), and images/s against the FLOP floor (results go in BENCHMARKS.md).

    pipeline bench train --size small --size large     # on a GPU
    pipeline bench train --smoke                          # tiny model on a CPU

The timed steps are one epoch's batches (the dataset is sized for it), fed by the loader, then
the same batches replayed from memory; the stall compares the total times. One run builds
everything: randomly initialised full-size Depth Anything V2 students saved and
reloaded like hub checkpoints, a prepared dataset of SA-1B-sized synthetic photos with two label
columns of real-size maps written through the label store, then times both loops.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.bench import parser as bench_parser
from pipeline.bench.synthetic import smooth_map, synthetic_dataset
from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.labels.column import LabelColumn
from pipeline.labels.manifest import create_or_check, record_shard
from pipeline.labels.store import open_writer
from pipeline.model.depth_anything import write_depth_anything
from pipeline.toolkit.config import load_config
from student.config import TrainSettings
from student.rundir import Job
from student.trainer import Trainer

# Per 560² image: student forward + backward (0.42 / 4.68 TFLOP) plus the frozen encoder's
# forward of the feature term (0.12 / 1.22), counted with torch.utils.flop_counter.FlopCounterMode.
TRAIN_FLOPS = {"small": 0.54e12, "large": 5.90e12}
WARMUP = 3
PEAK = 990e12


def write_dataset(root: Path, images: int, shape: tuple[int, int]) -> Path:
    """Synthetic photos, prepared, with two label columns of real-size smooth maps."""
    h, w = shape
    dataset = synthetic_dataset(root, images, shape)
    info = load_dataset(dataset)
    for column in ("t1", "t2"):
        column_dir = info.layout.column_dir(column)
        create_or_check(
            column_dir,
            {
                "teacher": column,
                "adapter": "synthetic",
                "weights": {"source": "-", "sha256": column},
                "output_kind": "disparity",
                "invariance": "affine",
                "input_rule": {},
                "precision": "fp32",
                "codec": {"name": "pcodec-f16", "params": {"level": 8}},
                "backend": "wds",
                "plan_sha256": info.plan_hash,
            },
        )
        for shard in info.shards:
            plan = load_plan_shard(info.layout.plan_shard(shard.index))
            path = LabelColumn(info, column).shard_path(shard.index)
            with open_writer(path, keys=list(plan), plan_sha256=shard.plan_sha256) as writer:
                for j, (key, entry) in enumerate(plan.items()):
                    maps = {"full": smooth_map(518, round(518 * w / h), j)}
                    maps.update(
                        {n: smooth_map(560, 560, j + k) for k, (n, _) in enumerate(views(entry))}
                    )
                    writer.write(key, maps)
            record_shard(column_dir, shard.name, writer.summary.manifest_entry())
    return dataset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer: Trainer, batches: list[Any] | Any, steps: int) -> tuple[list[float], list]:
    """Seconds of each of `steps` optimizer steps (data fetch included) after WARMUP steps, and
    the batches those steps used (`batches`: an iterator, or a list replayed in order)."""
    source = iter(batches)
    times, used = [], []
    for i in range(steps + WARMUP):
        _sync(trainer.device)
        start = time.perf_counter()
        batch = next(source)
        terms = trainer.micro_step(batch, 1.0)
        if isinstance(terms, str):  # why the micro-batch is bad
            raise RuntimeError(f"{terms} in the benchmark")
        trainer.optimization.step()
        _sync(trainer.device)
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
            used.append(batch)
    return times, used


def bench_size(
    workdir: Path, dataset: Path, size: str, steps: int, batch: int, workers: int
) -> dict[str, Any]:
    """Time `steps` training steps fed by the loader, then the same batches replayed from memory.

    The data stall is `1 - replay / loader` of the total times (negative values are reported as
    they are: noise). Totals, not medians: a loader stall shows up as a few long waits.
    """
    init = write_depth_anything(workdir / f"student-{size}", size)
    settings = load_config(
        TrainSettings,
        None,
        [
            f"steps={steps + 100}",
            f"batch_size={batch}",
            f"data.workers={workers}",
            "data.size=560" if size != "tiny" else "data.size=112",
        ],
    )
    trainer = Trainer(
        Job(dataset, ["t1", "t2"], str(init), workdir / f"run-{size}", settings),
        torch.device("cuda" if torch.cuda.is_available() else "cpu"),
        0,
        1,
    )
    trainer.model.train()
    if len(trainer.stream) < steps + WARMUP:
        raise ValueError(
            f"{len(trainer.stream)} batches per epoch; the timed steps must fit in one epoch "
            f"(need {steps + WARMUP}): pass --images {batch * (steps + WARMUP)} or more"
        )
    real, used = time_steps(trainer, trainer.batches(), steps)
    replay, _ = time_steps(trainer, used[:WARMUP] + used, steps)
    real_s, replay_s = sum(real) / steps, sum(replay) / steps
    row = {
        "student": size,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "batch": batch,
        "workers": workers,
        "steps": steps,
        "real_step_s": real_s,
        "real_step_median_s": statistics.median(real),
        "replay_step_s": replay_s,
        "data_stall": 1 - replay_s / real_s,
        "images_per_s": batch / real_s,
    }
    if size in TRAIN_FLOPS:
        row["floor_images_per_s"] = PEAK / TRAIN_FLOPS[size]
        row["images_over_floor"] = row["images_per_s"] / row["floor_images_per_s"]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--size", action="append", choices=["small", "large"], default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--images", type=int, default=None, help="default: enough for one epoch of timed steps"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny model, few small images")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = ["tiny"] if args.smoke else (args.size or ["small", "large"])
    shape = (480, 720) if args.smoke else (1500, 2250)
    steps = 3 if args.smoke else args.steps
    batch = 2 if args.smoke else args.batch
    images = args.images or batch * (steps + WARMUP)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-train-") as tmp:
        dataset = write_dataset(Path(tmp), images, shape)
        rows = [
            bench_size(Path(tmp), dataset, s, steps, batch, 0 if args.smoke else args.workers)
            for s in sizes
        ]
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
