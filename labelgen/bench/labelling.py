"""Benchmarks of label generation (results go in BENCHMARKS.md).

    pipeline bench labelgen cpu       # tiny teacher on CPU: share of wall time in the forward
    pipeline bench labelgen gpu       # full-size random DAv2-L and GenPercept at 560 in bf16
    pipeline bench labelgen startup   # `labelgen run` start to first batch, DAv2-L (startup.py)

`gpu` builds, checks and times everything in one run: random full-size checkpoints saved and
reloaded through the adapters, a prepared synthetic dataset of SA-1B-sized images, the bare
batched forward, `labelgen run`, their ratio and the ratio to the FLOP floor. `--smoke` runs the
same script with tiny models and few images, so it can be checked on a CPU.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from labelgen.bench.startup import bench_startup
from labelgen.run import run
from labelgen.settings import RunSettings
from labelgen.shard_job import ShardViews
from labelgen.teachers import (
    load_teacher,
    parse_teacher_spec,
    write_checkpoint,
    write_tiny_checkpoint,
)
from pipeline.bench import parser as bench_parser
from pipeline.bench.synthetic import smooth_map, synthetic_dataset, synthetic_photos
from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.labels.store import open_writer
from pipeline.toolkit.cpus import usable_cpus
from pipeline.toolkit.devices import resolve_device
from pipeline.toolkit.launch import Launch

# FLOPs per 560x560 view (reference/teachers.md, counted on the meta device) and H100 peak.
FLOPS_PER_VIEW = {"dav2-large": 1.56e12, "genpercept": 5.36e12}
PEAK_FLOPS = {"H100": 990e12, "H200": 990e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def all_views(dataset: Path, tile: int, teacher: Any) -> list[dict[str, torch.Tensor]]:
    """Every image's views, the full one as `teacher` has it."""
    info = load_dataset(dataset)
    out = []
    for shard in info.shards:
        plan = load_plan_shard(info.layout.plan_shard(shard.index))
        image_shard = info.layout.image_shard(shard.index)
        views = ShardViews(image_shard, plan, tile, teacher.full_view_size, teacher.interpolation)
        out += [views[i][1] for i in range(len(views))]
    return out


def bare_forward(
    teacher: Any,
    views: list[dict[str, torch.Tensor]],
    batch: int,
    device: torch.device,
    repeats: int = 1,
) -> tuple[float, int]:
    """Seconds (median of `repeats` passes) and view count of the teacher alone over the same
    views, batched like labelgen (equal shapes together), inputs already on the device."""
    groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    for image in views:
        for v in image.values():
            groups.setdefault(tuple(v.shape[-2:]), []).append(v)
    batches = [
        torch.stack(vs[i : i + batch]).to(device).float().div_(255)
        for vs in groups.values()
        for i in range(0, len(vs), batch)
    ]
    for shape in {tuple(x.shape) for x in batches}:  # warm-up: every batch shape once
        teacher.predict(next(x for x in batches if tuple(x.shape) == shape))
    seconds = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for x in batches:
            teacher.predict(x)
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), sum(len(b) for b in batches)


def stage_costs(dataset: Path, teacher: Any, tile: int) -> dict[str, float]:
    """CPU seconds of decode + view building, and of encoding + writing, for the dataset."""
    info = load_dataset(dataset)
    shard = info.shards[0]
    plan = load_plan_shard(info.layout.plan_shard(0))
    start = time.perf_counter()
    full = teacher.full_view_size, teacher.interpolation
    views = ShardViews(info.layout.image_shard(0), plan, tile, *full)
    items = [views[i] for i in range(len(views))]
    decode = time.perf_counter() - start
    maps = {key: {n: smooth_map(*v.shape[-2:]) for n, v in vs.items()} for key, vs, _ in items}
    out = Path(tempfile.mkdtemp()) / "x.tar"
    with open_writer(out, keys=list(plan), plan_sha256=shard.plan_sha256) as w:
        start = time.perf_counter()
        prepared = [w.prepare(key, m) for key, m in maps.items()]
        encode = time.perf_counter() - start
        start = time.perf_counter()
        for p in prepared:
            w.write_prepared(p)
        write = time.perf_counter() - start
    shutil.rmtree(out.parent)
    return {
        "decode_and_views_s": decode,
        "encode_s": encode,
        "write_s": write,
        "images": len(items),
    }


def labelgen_seconds(
    dataset: Path, spec: str, settings: RunSettings, launch: Launch
) -> tuple[float, int]:
    """Wall seconds of `labelgen run`'s labelling loop (model loading excluded) and views."""
    (report,) = run(dataset, [parse_teacher_spec(spec)], settings, launch=launch)
    if report.shards_failed:
        raise RuntimeError(f"labelgen failed: {report.shards_failed}")
    return report.seconds, report.views


def bench_cpu(workdir: Path, images: int, repeats: int) -> dict[str, Any]:
    """Tiny Depth Anything teacher on CPU: forward share of labelgen wall time, stage costs."""
    torch.set_num_threads(2)
    synthetic_photos(workdir / "photos", images, (900, 1200))
    dataset = workdir / "ds"
    prepare(
        [str(workdir / "photos")],
        dataset,
        PrepareSettings(shard_size=images),
        progress=False,
        workers=1,
    )
    ckpt = write_tiny_checkpoint("depth-anything-v2", workdir / "tiny-da")
    teacher = load_teacher(f"da=depth-anything-v2:{ckpt}")
    views = all_views(dataset, 560, teacher)
    forward = [bare_forward(teacher, views, 8, torch.device("cpu"))[0] for _ in range(repeats)]
    runs = []
    for i in range(repeats):
        settings = RunSettings(batch_size=8, encode_threads=1)
        launch = Launch(device="cpu", workers=1, progress=False)
        spec = f"r{i}=depth-anything-v2:{ckpt}"
        seconds, n_views = labelgen_seconds(dataset, spec, settings, launch)
        runs.append(seconds)
    result = {
        "images": images,
        "views": n_views,
        "forward_s": statistics.median(forward),
        "labelgen_s": statistics.median(runs),
        **stage_costs(dataset, teacher, 560),
    }
    result["forward_share"] = result["forward_s"] / result["labelgen_s"]
    return result


def bench_gpu(
    workdir: Path, images: int, batch: int, smoke: bool, repeats: int = 3
) -> list[dict[str, Any]]:
    """Per teacher: bare batched forward views/s (median of `repeats`), labelgen views/s, ratio,
    FLOP-floor ratio. One image shard, so the job's per-shard costs (worker start-up, the last
    writes and the publish) are paid once, as for a production shard of 1000 images."""
    device = resolve_device("auto")
    size = (480, 720) if smoke else (1500, 2250)
    dataset = synthetic_dataset(workdir, images, size, shards=1)
    encode_threads = 1 if smoke else min(12, usable_cpus())
    # name -> (adapter, size of the random checkpoint; tiny ones in smoke mode)
    teachers = {"dav2-large": ("depth-anything-v2", "large"), "genpercept": ("genpercept", "full")}
    precision = "fp32" if device.type == "cpu" else "bf16"
    rows = []
    for name, (adapter, full) in teachers.items():
        ckpt = write_checkpoint(adapter, workdir / name, "tiny" if smoke else full)
        spec = f"{name}={adapter}:{ckpt}"
        teacher = load_teacher(spec, device=str(device), precision=precision)
        views = all_views(dataset, 560, teacher)
        check = teacher.predict(views[0]["r0.sc"][None].to(device).float() / 255)
        if check.shape != (1, 1, 560, 560) or not torch.isfinite(check).all():
            raise RuntimeError(f"{name}: unexpected output {tuple(check.shape)}")
        bare_s, bare_views = bare_forward(teacher, views, batch, device, repeats)
        del teacher
        torch.cuda.empty_cache() if device.type == "cuda" else None
        settings = RunSettings(batch_size=batch, encode_threads=encode_threads)
        launch = Launch(workers=8 if not smoke else 1, precision=precision, progress=False)
        run_s, run_views = labelgen_seconds(dataset, spec, settings, launch)
        bare_rate, run_rate = bare_views / bare_s, run_views / run_s
        floor = PEAK_FLOPS["H100"] / FLOPS_PER_VIEW[name]
        rows.append(
            {
                "teacher": name,
                "device": str(torch.cuda.get_device_name(device))
                if device.type == "cuda"
                else "cpu",
                "images": images,
                "views": run_views,
                "batch": batch,
                "encode_threads": encode_threads,
                "bare_views_per_s": bare_rate,
                "labelgen_views_per_s": run_rate,
                "labelgen_over_bare": run_rate / bare_rate,
                "floor_views_per_s": floor,
                "bare_over_floor": bare_rate / floor,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("mode", choices=["cpu", "gpu", "startup"])
    parser.add_argument("--images", type=int, default=None, help="images to label")
    parser.add_argument("--batch", type=int, default=32, help="views per forward (gpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; median")
    parser.add_argument("--smoke", action="store_true", help="gpu or startup mode with tiny models")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--baseline", type=Path, default=None, help="startup: also time this source tree"
    )
    parser.add_argument(
        "--cold", action="store_true", help="startup: checkpoint out of the page cache"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="labelgen-bench-") as tmp:
        if args.mode == "startup":
            size = "tiny" if args.smoke else "large"
            result = bench_startup(Path(tmp), args.repeats, args.baseline, args.cold, size)
        elif args.mode == "cpu":
            result: Any = bench_cpu(Path(tmp), args.images or 6, args.repeats)
        else:
            result = bench_gpu(
                Path(tmp),
                args.images or (4 if args.smoke else 64),
                args.batch,
                args.smoke,
                1 if args.smoke else args.repeats,
            )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
