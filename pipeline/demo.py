"""`pipeline demo`: the method end to end on bundled photos, offline, with tiny random models.

The demo runs the same commands a user runs (printed as it goes), each in its own process, so
`pipeline` never imports a stage: prepare the photos scikit-image ships, write tiny checkpoints
of two teacher families, label with both, add a third teacher (only its column is computed),
train a tiny student with the cross-context losses, export it, score the teachers and the student
on the built-in Middlebury sample with the benchmark protocol, and print the report.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import typer

from pipeline.dataset.plan import load_plan_shard, views
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.dataset.status import dataset_status, format_status
from pipeline.images.samples import write_sample_images

TEACHERS = {"dav2": "depth-anything-v2", "genpercept": "genpercept", "dpt": "dpt"}
REAL = (
    "--teacher dav2=depth-anything-v2:depth-anything/Depth-Anything-V2-Large-hf "
    "--teacher genpercept=genpercept:/models/genpercept-disparity"
)


def _run(step: str, args: list[str]) -> None:
    """Run `python -m <stage>.cli ...` (what the console script does), echoing it first."""
    stage, *rest = args
    typer.echo(f"\n[{step}] $ {stage} {shlex.join(rest)}")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", f"{stage}.cli", *rest], text=True, capture_output=True
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    for line in lines[-4:]:
        typer.echo(f"    {line}")
    if done.returncode != 0:
        typer.echo(done.stderr[-3000:], err=True)
        raise RuntimeError(f"demo step {step!r} failed (exit {done.returncode})")
    typer.echo(f"    ({time.perf_counter() - started:.0f} s)")


def _describe_plan(dataset: Path) -> str:
    plans = {}
    for path in sorted((dataset / "plan").glob("*.json")):
        plans.update(load_plan_shard(path))
    key, entry = max(plans.items(), key=lambda kv: kv[1]["size"][0] * kv[1]["size"][1])
    h, w = entry["size"]
    lines = [f"    crop plan of {key!r} ({w}x{h} px):"]
    for k, region in enumerate(entry["regions"]):
        x0, _, x1, _ = region["box"]
        lines.append(
            f"      region r{k}: box {region['box']} (side {x1 - x0}), "
            f"{len(region['tiles'])} tiles of 560x560"
        )
    lines.append(f"      views per teacher: full + {len(views(entry))}")
    return "\n".join(lines)


def _evaluate(eval_dir: Path, teachers: dict[str, str], student: Path) -> str:
    """Score the teachers and the student on the built-in Middlebury sample; the report text."""
    models = {name: spec.split("=", 1)[1] for name, spec in teachers.items()}
    models["student"] = str(student)
    for name, model in models.items():
        _run(
            "7/8",
            ["evaluation", "run", "--model", model, "--name", name, "--dataset", "middlebury",
             "--out", str(eval_dir / name), "--device", "cpu", "--workers", "0"],
        )  # fmt: skip
    report = eval_dir / "report.md"
    dirs = [str(eval_dir / name) for name in models]
    _run("8/8", ["evaluation", "report", *dirs, "--out", str(report)])
    table = report.read_text().split("\n## ", 1)[0].strip()
    return f"{table}\n(how each number was computed: {report})"


def run_demo(out: Path, device: str = "cpu") -> None:
    """Run every step under `out` and print what was made and what to try next."""
    out = Path(out).resolve()
    dataset, ckpts, run_dir, hf = (
        out / "dataset",
        out / "checkpoints",
        out / "runs" / "student",
        out / "student-hf",
    )
    images = write_sample_images(out / "samples")
    typer.echo(f"[1/8] {len(images)} bundled photos (scikit-image) in {out / 'samples'}")
    typer.echo(
        f"[1/8] $ pipeline prepare --images {out / 'samples'} --out {dataset} --shard-size 4"
    )
    result = prepare([str(out / "samples")], dataset, PrepareSettings(shard_size=4), progress=False)
    typer.echo(f"    {result.summary()}\n{_describe_plan(dataset)}")
    for name, adapter in TEACHERS.items():
        if not (ckpts / name).is_dir():
            _run("2/8", ["labelgen", "tiny-checkpoint", adapter, str(ckpts / name)])
    spec = {n: f"{n}={a}:{ckpts / n}" for n, a in TEACHERS.items()}
    common = ["--dataset", str(dataset), "--device", device, "--workers", "0", "--no-progress"]
    _run(
        "3/8",
        ["labelgen", "run", *common, "--teacher", spec["dav2"], "--teacher", spec["genpercept"]],
    )
    _run(
        "4/8", ["labelgen", "run", *common, *[a for n in TEACHERS for a in ("--teacher", spec[n])]]
    )
    steps = 24
    if not (run_dir / "config.yaml").exists():
        _run(
            "5/8",
            ["student", "train", "--dataset", str(dataset), "--teacher", "dav2",
             "--teacher", "genpercept", "--init", str(ckpts / "dav2"), "--out", str(run_dir),
             "--steps", str(steps), "--batch-size", "2", "--set", "data.size=280",
             "--set", "data.workers=0", "--set", f"checkpoint_every={steps}",
             "--set", "log_every=4", "--set", "optim.lr=5e-4"],
        )  # fmt: skip
    elif not (run_dir / "checkpoints" / f"step_{steps:07d}.pt").exists():  # interrupted
        _run("5/8", ["student", "train", "--out", str(run_dir), "--resume"])
    _run("6/8", ["student", "export", str(run_dir), "--out", str(hf)])
    report = _evaluate(out / "eval", {n: spec[n] for n in ("dav2", "genpercept")}, run_dir)
    typer.echo("\n" + report)
    typer.echo("\n" + format_status(dataset_status(dataset)))
    typer.echo(f"""
Everything is under {out}:
  dataset    {dataset}   (images/, plan/, labels/<teacher>/)
  student    {run_dir}   (config.yaml, metrics.jsonl, checkpoints/)
  exported   {hf}   (transformers.pipeline("depth-estimation", model=...))
  evaluation {out / "eval"}   (per-model predictions, per_sample.csv, summary.json; report.md)

The teachers and the student here are tiny RANDOM models: they predict no real depth. The
commands are the real ones; with real checkpoints the labelling step becomes
  labelgen run --dataset {dataset} {REAL}
Next: pipeline verify {dataset}  |  student predict {hf} {images[0]} --out preds/""")
