"""Training-step benchmark: real shards through the loader vs the same step on an in-memory
batch (data stall), and images/s against the FLOP floor (results go in BENCHMARKS.md).

    pipeline bench train --student dav2-small --student dpt-large    # on a GPU
    pipeline bench train --size small --size large     # the same as --student dav2-small/-large
    pipeline bench train --smoke                          # tiny models on a CPU

Students (`--student`, `STUDENTS`) of every family (`student.families`): Depth Anything V2
(`dav2-small`, `dav2-large`), DPT / MiDaS v3.0 (`dpt-large`, `dpt-hybrid`), MiDaS v3.1 BEiT
(`beit-large-512`, `beit-large-384`, `beit-base-384`) and Swin V2 (`swinv2-tiny-256`,
`swinv2-base-384`, `swinv2-large-384`), and tiny ones of each family for `--smoke` (default there:
`dav2-tiny` and `dpt-tiny`). Each computes at its family's side for 560 views (`side` in its row:
560 for Depth Anything, 576 for DPT and Swin V2, a BEiT's pretraining side, 384 for the hybrid).
The FLOP floor is `PEAK` over the training FLOPs of one image (`train_flops`: the student's
forward and backward plus the frozen encoder's forward of the feature term, counted by
`torch.utils.flop_counter.FlopCounterMode` on the meta device at that side, so no memory and a few
seconds); a model the counter cannot run leaves the floor `not computed`.

The timed steps are one epoch's batches (the dataset is sized for it), fed by the loader, then
the same batches replayed from memory; the stall compares the total times. One run builds
everything: randomly initialised full-size students saved and reloaded like hub checkpoints, a
prepared dataset of SA-1B-sized synthetic photos with two label columns of real-size maps written
through the label store, then times both loops.
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
from pipeline.model.dpt_families import write_dpt
from pipeline.toolkit.config import load_config
from student.config import TrainSettings
from student.model import Student
from student.rundir import Job
from student.trainer import Trainer

STUDENTS = {
    "dav2-small": ("depth-anything", "small"),
    "dav2-large": ("depth-anything", "large"),
    "dpt-large": ("dpt", "large"),
    "dpt-hybrid": ("dpt", "hybrid"),
    "beit-large-512": ("dpt", "beit-large-512"),
    "beit-large-384": ("dpt", "beit-large-384"),
    "beit-base-384": ("dpt", "beit-base-384"),
    "swinv2-tiny-256": ("dpt", "swinv2-tiny-256"),
    "swinv2-base-384": ("dpt", "swinv2-base-384"),
    "swinv2-large-384": ("dpt", "swinv2-large-384"),
}
"""`--student` name -> (writer, its size): `write_depth_anything` or `write_dpt`."""
TINY = {
    "dav2-tiny": ("depth-anything", "tiny"),
    "dpt-tiny": ("dpt", "tiny"),
    "dpt-tiny-hybrid": ("dpt", "tiny-hybrid"),
    "beit-tiny": ("dpt", "tiny-beit"),
    "swinv2-tiny": ("dpt", "tiny-swinv2"),
}
"""The tiny student of each family, for `--smoke` (views of 112 px instead of 560)."""
SIZES = {"small": "dav2-small", "large": "dav2-large"}
"""`--size`: the Depth Anything V2 students by their size alone (older commands)."""
SMOKE = ["dav2-tiny", "dpt-tiny"]
DEFAULT = ["dav2-small", "dav2-large"]
# Training FLOPs per image counted by `train_flops` (at 560² for Depth Anything: student forward
# + backward 0.42 / 4.68 TFLOP plus the frozen encoder's forward 0.12 / 1.22): dav2-small 0.54,
# dav2-large 5.90, dpt-large 4.71 (576²), dpt-hybrid 0.90 (384²), beit-large-512 3.61,
# beit-base-384 0.78, swinv2-tiny-256 1.02, swinv2-base-384 1.96, swinv2-large-384 3.35 (576²).
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


def write_student(out: Path, name: str) -> Path:
    """A random checkpoint of the `--student` named `name` (`STUDENTS` or `TINY`)."""
    writer, size = {**STUDENTS, **TINY}[name]
    return (write_depth_anything if writer == "depth-anything" else write_dpt)(out, size)


def train_flops(student: Student, side: int) -> float | None:
    """Training FLOPs of one `side`² image: the student's forward and backward, plus the frozen
    encoder's forward when the feature term is on (`frozen`), counted by `FlopCounterMode` on a
    meta-device copy of the architecture; None when the counter cannot run it."""
    from torch.utils.flop_counter import FlopCounterMode

    family = student.family
    try:
        with torch.device("meta"):
            model = family.model_class()(student.model.config)
            x = torch.randn(1, 3, side, side)
        with FlopCounterMode(display=False) as counter:
            model(pixel_values=x).predicted_depth.sum().backward()
            if student.frozen is not None:
                with torch.no_grad():
                    family.run_encoder(family.encoder(model), x)
        return float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - an op the meta device or the counter lacks
        return None


def bench_size(
    workdir: Path, dataset: Path, name: str, steps: int, batch: int, workers: int
) -> dict[str, Any]:
    """Time `steps` training steps fed by the loader, then the same batches replayed from memory.

    The data stall is `1 - replay / loader` of the total times (negative values are reported as
    they are: noise). Totals, not medians: a loader stall shows up as a few long waits.
    """
    init = write_student(workdir / f"student-{name}", name)
    settings = load_config(
        TrainSettings,
        None,
        [
            f"steps={steps + 100}",
            f"batch_size={batch}",
            f"data.workers={workers}",
            "data.size=112" if name in TINY else "data.size=560",
        ],
    )
    trainer = Trainer(
        Job(dataset, ["t1", "t2"], str(init), workdir / f"run-{name}", settings),
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
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    real, used = time_steps(trainer, trainer.batches(), steps)
    replay, _ = time_steps(trainer, used[:WARMUP] + used, steps)
    real_s, replay_s = sum(real) / steps, sum(replay) / steps
    side = trainer.student.side or settings.data.size
    row = {
        "student": name,
        "side": side,
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
    if trainer.device.type == "cuda":  # the measured figure `pipeline bench memory` computes
        row["peak_gib"] = torch.cuda.max_memory_allocated(trainer.device) / 2**30
    flops = train_flops(trainer.student, side)
    if flops is None:
        row["train_tflop_per_image"] = row["floor_images_per_s"] = "not computed"
    else:
        row["train_tflop_per_image"] = flops / 1e12
        row["floor_images_per_s"] = PEAK / flops
        row["images_over_floor"] = row["images_per_s"] / row["floor_images_per_s"]
    return row


def chosen_students(students: list[str] | None, sizes: list[str] | None, smoke: bool) -> list[str]:
    """The students a run benchmarks, in order, once each: `--student` names then `--size`
    ones (`SIZES`); neither: `SMOKE` with `--smoke`, else `DEFAULT`."""
    chosen = [*(students or []), *(SIZES[s] for s in sizes or [])]
    return list(dict.fromkeys(chosen or (SMOKE if smoke else DEFAULT)))


def add_student_option(parser: Any, default: str) -> None:
    """`--student NAME` (repeatable) of `STUDENTS` and `TINY`; `default` says what none means."""
    parser.add_argument(
        "--student", action="append", choices=[*STUDENTS, *TINY], default=None, help=default
    )


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__name__, __doc__)
    add_student_option(parser, f"default: {' '.join(DEFAULT)} ({' '.join(SMOKE)} with --smoke)")
    parser.add_argument(
        "--size",
        action="append",
        choices=sorted(SIZES),
        default=None,
        help="Depth Anything V2 by size: --size small is --student dav2-small",
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--images", type=int, default=None, help="default: enough for one epoch of timed steps"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny students, few small images, on a CPU"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    students = chosen_students(args.student, args.size, args.smoke)
    shape = (480, 720) if args.smoke else (1500, 2250)
    steps = 3 if args.smoke else args.steps
    batch = 2 if args.smoke else args.batch
    images = args.images or batch * (steps + WARMUP)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-train-") as tmp:
        dataset = write_dataset(Path(tmp), images, shape)
        rows = [
            bench_size(Path(tmp), dataset, s, steps, batch, 0 if args.smoke else args.workers)
            for s in students
        ]
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
