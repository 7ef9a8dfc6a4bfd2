"""`labelgen estimate`: label a small sample, then project disk and device time for the dataset."""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from labelgen.settings import RunSettings, inference_precision, labelling_launch
from labelgen.shard_job import LabelSettings, ShardJob, label_shard
from labelgen.teachers import TeacherSpec, load_teacher
from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.labels.store import backend_suffix
from pipeline.toolkit.devices import resolve_device
from pipeline.toolkit.launch import Launch


@dataclass
class Estimate:
    teacher: str
    sample_images: int
    views_per_image: float
    bytes_per_image: float
    seconds_per_image: float
    total_images: int

    @property
    def total_bytes(self) -> float:
        return self.bytes_per_image * self.total_images

    @property
    def device_hours(self) -> float:
        return self.seconds_per_image * self.total_images / 3600


def estimate_teacher(
    dataset: Path | str,
    spec: TeacherSpec,
    settings: RunSettings,
    sample: int = 8,
    launch: Launch | None = None,
) -> Estimate:
    """Label the first `sample` images of shard 0 into a temporary shard and time it, launched
    as `labelgen run` would be (`launch`: its device, workers and precision)."""
    launch = labelling_launch(launch)
    info = load_dataset(dataset)
    if not info.shards:
        raise ValueError(f"{info.layout.root}: the dataset has no images")
    shard = info.shards[0]
    plan = load_plan_shard(info.layout.plan_shard(0))
    subset = dict(itertools.islice(plan.items(), sample))
    device = resolve_device(launch.device)
    precision = inference_precision(launch.precision, device)
    teacher = load_teacher(spec, device=str(device), precision=precision)
    how = LabelSettings.of(teacher, device, settings, launch.workers)
    with tempfile.TemporaryDirectory(prefix="labelgen-estimate-") as tmp:
        suffix = backend_suffix(settings.format)
        job = ShardJob(
            image_shard=info.layout.image_shard(0),
            plan=subset,
            plan_sha256=shard.plan_sha256,
            out=Path(tmp) / f"sample{suffix}",
            backend=settings.format,
            codec=settings.codec,
            tile=info.plan_params.tile,
            meta={"estimate": True},
        )
        first = dict(itertools.islice(subset.items(), 1))  # warm-up: first-call costs
        label_shard(
            dataclasses.replace(job, plan=first, out=Path(tmp) / f"warm{suffix}"),
            dataclasses.replace(how, workers=0, encode_threads=4, record_extra={}),
        )
        start = time.perf_counter()
        summary, _ = label_shard(job, how)
        seconds = time.perf_counter() - start
    n = len(subset)
    n_views = sum(1 + len(views(entry)) for entry in subset.values())
    return Estimate(spec.name, n, n_views / n, summary.bytes / n, seconds / n, info.num_samples)


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def format_estimates(estimates: list[Estimate], device: str) -> str:
    row = "{:<20} {:>9} {:>10} {:>7} {:>10} {:>9}"
    head = row.format("teacher", "views/img", "bytes/img", "s/img", "disk", "device-h")
    lines = [head, "-" * len(head)]
    for e in estimates:
        lines.append(
            row.format(
                e.teacher,
                f"{e.views_per_image:.1f}",
                _human(e.bytes_per_image),
                f"{e.seconds_per_image:.3f}",
                _human(e.total_bytes),
                f"{e.device_hours:.2f}",
            )
        )
    total = sum(e.total_bytes for e in estimates)
    hours = sum(e.device_hours for e in estimates)
    images = estimates[0].total_images if estimates else 0
    lines.append(
        f"projected for {images} images on {device}: {_human(total)} of labels, "
        f"{hours:.2f} device-hours (divide by the number of devices)"
    )
    return "\n".join(lines)
