"""`pipeline demo`: the method end to end on bundled photos, offline.

Today it covers the dataset directory: bundled photos (scikit-image ships them) are prepared into
image shards and a crop plan, and the demo prints the plan of one image and the dataset status.
Label generation, training and evaluation join as those stages land.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.plan import load_plan_shard, views
from pipeline.prepare import PrepareSettings, prepare
from pipeline.samples import write_sample_images
from pipeline.status import dataset_status, format_status


def _describe_plan(dataset: Path) -> str:
    plan = load_plan_shard(dataset / "plan" / "000000.json")
    key, entry = next(iter(plan.items()))
    h, w = entry["size"]
    lines = [f"crop plan of {key!r} ({w}x{h} px):"]
    for k, region in enumerate(entry["regions"]):
        x0, y0, x1, y1 = region["box"]
        lines.append(
            f"  region r{k}: box {region['box']} (side {x1 - x0}), "
            f"{len(region['tiles'])} tiles of 560x560"
        )
    names = [name for name, _box in views(entry)]
    lines.append(f"  views per teacher for this image: full + {len(names)} ({', '.join(names)})")
    return "\n".join(lines)


def run_demo(out: Path, device: str = "cpu") -> None:
    """Prepare the bundled photos under `out` and print what was made."""
    out = Path(out)
    samples = out / "samples"
    images = write_sample_images(samples)
    typer.echo(f"[1/2] wrote {len(images)} bundled photos to {samples}")
    dataset = out / "dataset"
    result = prepare([str(samples)], dataset, PrepareSettings(shard_size=4), progress=False)
    typer.echo(f"[2/2] {result.summary()}")
    typer.echo("")
    typer.echo(_describe_plan(dataset))
    typer.echo("")
    typer.echo(format_status(dataset_status(dataset)))
    typer.echo("")
    typer.echo(f"next: pipeline status {dataset}   |   pipeline verify {dataset}")
