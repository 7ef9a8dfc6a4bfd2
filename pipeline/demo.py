"""`pipeline demo`: the method end to end on bundled photos, offline, with tiny random models.

The demo runs the same commands a user runs (printed as it goes), each in its own process, so
`pipeline` never imports a stage: prepare the photos scikit-image ships, write tiny checkpoints
of two teacher families, label with both, add a third teacher (only its column is computed),
train a tiny student with the cross-context losses, export it, predict one photo with it and
draw a panel (the photo, each teacher's label, the student's prediction), score the teachers and
the student on the built-in Middlebury sample with the benchmark protocol, and print the report.

Each step prints its wall-clock and CPU time. The steps run with `OMP_WAIT_POLICY=PASSIVE`
unless it is set: on a machine shared with other work, PyTorch's spinning OpenMP threads
otherwise burn several times the CPU time they compute with.
"""

from __future__ import annotations

import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import typer
from PIL import Image, ImageDraw

from pipeline.dataset import load_dataset
from pipeline.dataset.plan import load_plan_shard, views
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.dataset.status import dataset_status, format_status
from pipeline.images.decode import encode_png
from pipeline.images.photos import write_sample_images
from pipeline.labels.column import LabelColumn
from pipeline.labels.store import open_reader
from pipeline.toolkit.atomic import write_bytes
from pipeline.toolkit.colormap import colorize_robust

TEACHERS = {"dav2": "depth-anything-v2", "genpercept": "genpercept", "dpt": "dpt"}
PANEL_KEY = "motorcycle_left"
"""The photo of the panel: the Middlebury scene the evaluation scores, too."""
PANEL_HEIGHT = 240
EVALUATED = ("dav2", "genpercept", "student")
"""The models the demo scores on the Middlebury sample."""
STEPS = 1 + len(TEACHERS) + 2 + 1 + 3 + len(EVALUATED) + 1
"""prepare, a tiny checkpoint per teacher, label two teachers then the third, train, export,
predict, panel, score each of `EVALUATED`, report: each numbered once, `[k/STEPS]`."""
REAL = (
    "--teacher dav2=depth-anything-v2:depth-anything/Depth-Anything-V2-Large-hf "
    "--teacher genpercept=genpercept:/models/genpercept-disparity"
)


class Steps:
    """The demo's step numbers, `k/n`, each given once."""

    def __init__(self, total: int = STEPS) -> None:
        self.total, self.given = total, 0

    def next(self) -> str:
        """The number of the next step."""
        self.given += 1
        return f"{self.given}/{self.total}"


def _skip(step: str, args: list[str], why: str = "done before, skipped") -> None:
    """Say that step `step` (the command `args`) does not run this time, and why."""
    stage, *rest = args
    typer.echo(f"\n[{step}] $ {stage} {shlex.join(rest)} ({why})")


def _run(step: str, args: list[str]) -> None:
    """Run `python -m <stage>.cli ...` (what the console script does), echoing it first."""
    stage, *rest = args
    typer.echo(f"\n[{step}] $ {stage} {shlex.join(rest)}")
    started, cpu = time.perf_counter(), _children_cpu()
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    done = subprocess.run(
        [sys.executable, "-m", f"{stage}.cli", *rest], text=True, capture_output=True, env=env
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    for line in lines[-4:]:
        typer.echo(f"    {line}")
    if done.returncode != 0:
        typer.echo(done.stderr[-3000:], err=True)
        raise RuntimeError(f"demo step {step!r} failed (exit {done.returncode})")
    typer.echo(f"    ({time.perf_counter() - started:.0f} s, {_children_cpu() - cpu:.0f} s CPU)")


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def _evaluate(steps: Steps, eval_dir: Path, teachers: dict[str, str], student: Path) -> str:
    """Score the teachers and the student on the built-in Middlebury sample; the report text."""
    models = {name: spec.split("=", 1)[1] for name, spec in teachers.items()}
    models["student"] = str(student)
    for name, model in models.items():
        _run(
            steps.next(),
            ["evaluation", "run", "--model", model, "--name", name, "--dataset", "middlebury",
             "--out", str(eval_dir / name), "--device", "cpu", "--workers", "0"],
        )  # fmt: skip
    report = eval_dir / "report.md"
    dirs = [str(eval_dir / name) for name in models]
    _run(steps.next(), ["evaluation", "report", *dirs, "--out", str(report)])
    table = report.read_text().split("\n## ", 1)[0].strip()
    return f"{table}\n(how each number was computed: {report})"


def _teacher_label(dataset: Path, column: str, key: str) -> np.ndarray:
    """The full-view label of `key` in label column `column`."""
    info = load_dataset(dataset)
    labels = LabelColumn(info, column)
    for shard in info.shards:
        with open_reader(labels.shard_path(shard.index)) as reader:
            if key in reader:
                return reader.read(key, "full")
    raise ValueError(f"{labels.dir}: no label of {key!r}")


def _tile(rgb: np.ndarray, title: str, size: tuple[int, int]) -> Image.Image:
    """`rgb` resized to `size` (width, height) under a caption."""
    tile = Image.new("RGB", (size[0], size[1] + 18), "white")
    tile.paste(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR), (0, 18))
    ImageDraw.Draw(tile).text((4, 3), title, fill="black")
    return tile


def write_panel(path: Path, photo: np.ndarray, maps: dict[str, np.ndarray], gap: int = 4) -> Path:
    """A PNG of the photo and, beside it at its size, each map in colour (scaled to its own
    2nd..98th percentiles), captioned with its name."""
    h, w = photo.shape[:2]
    size = (round(w * PANEL_HEIGHT / h), PANEL_HEIGHT)
    tiles = [_tile(photo, "image", size)]
    tiles += [_tile(colorize_robust(m), name, size) for name, m in maps.items()]
    panel = Image.new("RGB", (len(tiles) * (size[0] + gap) - gap, tiles[0].height), "white")
    for i, tile in enumerate(tiles):
        panel.paste(tile, (i * (size[0] + gap), 0))
    write_bytes(path, encode_png(np.asarray(panel)))
    return path


def _panel(out: Path, dataset: Path, photo: Path, preds: Path) -> Path:
    """The panel of `photo`: each teacher's label (from the dataset) and the student's
    prediction (`student predict`'s .npy in `preds`)."""
    maps = {f"{t} label": _teacher_label(dataset, t, PANEL_KEY) for t in TEACHERS}
    maps["student prediction"] = np.load(preds / f"{PANEL_KEY}.npy")
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    return write_panel(out / "panel.png", rgb, maps)


def _prepare(steps: Steps, out: Path, dataset: Path) -> list[Path]:
    images = write_sample_images(out / "samples")
    typer.echo(
        f"[{steps.next()}] $ pipeline prepare --images {out / 'samples'} --out {dataset} "
        f"--shard-size 4\n    {len(images)} bundled photos (scikit-image) in {out / 'samples'}"
    )
    result = prepare([str(out / "samples")], dataset, PrepareSettings(shard_size=4), progress=False)
    typer.echo(f"    {result.summary()}\n{_describe_plan(dataset)}")
    return images


def _label(steps: Steps, dataset: Path, ckpts: Path, device: str) -> dict[str, str]:
    """Tiny checkpoints, two teachers, then a third; the teacher specs."""
    for name, adapter in TEACHERS.items():
        args = ["labelgen", "tiny-checkpoint", adapter, str(ckpts / name)]
        (_skip if (ckpts / name).is_dir() else _run)(steps.next(), args)
    spec = {n: f"{n}={a}:{ckpts / n}" for n, a in TEACHERS.items()}
    common = ["--dataset", str(dataset), "--device", device, "--workers", "0", "--no-progress"]
    _run(
        steps.next(),
        ["labelgen", "run", *common, "--teacher", spec["dav2"], "--teacher", spec["genpercept"]],
    )
    _run(
        steps.next(),
        ["labelgen", "run", *common, *[a for n in TEACHERS for a in ("--teacher", spec[n])]],
    )
    return spec


def _train(steps: Steps, dataset: Path, init: Path, run_dir: Path, train_steps: int = 24) -> None:
    """Train the student, or continue a run an interruption left unfinished."""
    if not (run_dir / "config.yaml").exists():
        _run(
            steps.next(),
            ["student", "train", "--dataset", str(dataset), "--teacher", "dav2",
             "--teacher", "genpercept", "--init", str(init), "--out", str(run_dir),
             "--steps", str(train_steps), "--batch-size", "2", "--set", "data.size=280",
             "--set", "data.workers=0", "--set", f"checkpoint_every={train_steps}",
             "--set", "log_every=4", "--set", "optim.lr=5e-4"],
        )  # fmt: skip
    else:  # an interrupted run continues; a finished one says so and does nothing
        _run(steps.next(), ["student", "train", "--out", str(run_dir), "--resume"])


def run_demo(out: Path, device: str = "cpu") -> None:
    """Run every step under `out` and print what was made and what to try next."""
    out = Path(out).resolve()
    dataset, ckpts, run_dir, hf = (
        out / "dataset",
        out / "checkpoints",
        out / "runs" / "student",
        out / "student-hf",
    )
    steps = Steps()
    images = _prepare(steps, out, dataset)
    spec = _label(steps, dataset, ckpts, device)
    _train(steps, dataset, ckpts / "dav2", run_dir)
    _run(steps.next(), ["student", "export", str(run_dir), "--out", str(hf)])
    photo, preds = out / "samples" / f"{PANEL_KEY}.png", out / "preds"
    _run(steps.next(), ["student", "predict", str(hf), str(photo), "--out", str(preds)])
    panel = _panel(out, dataset, photo, preds)
    typer.echo(
        f"\n[{steps.next()}] panel: the photo, each teacher's label, the student's prediction: "
        f"{panel}"
    )
    teachers = {n: spec[n] for n in EVALUATED if n in spec}
    report = _evaluate(steps, out / "eval", teachers, run_dir)
    typer.echo("\n" + report)
    typer.echo("\n" + format_status(dataset_status(dataset)))
    other = next(p for p in images if p != photo)
    typer.echo(f"""
Everything is under {out}:
  dataset    {dataset}   (images/, plan/, labels/<teacher>/)
  student    {run_dir}   (config.yaml, metrics.jsonl, checkpoints/)
  exported   {hf}   (transformers.pipeline("depth-estimation", model=...))
  predicted  {preds}   (NAME.npy disparity, NAME.png in colour)
  panel      {panel}   (photo | labels of {", ".join(TEACHERS)} | student; brighter = nearer)
  evaluation {out / "eval"}   (per-model predictions, per_sample.csv, summary.json; report.md)

The teachers and the student here are tiny RANDOM models: they predict no real depth. The
commands are the real ones; with real checkpoints the labelling step becomes
  labelgen run --dataset {dataset} {REAL}
Next: pipeline verify {dataset}  |  student predict {hf} {other} --out {preds}""")
