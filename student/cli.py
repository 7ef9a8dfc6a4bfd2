"""`student`: train, export and run the distilled student. Thin commands over library functions.

`student train` loads its settings as `defaults <- --config FILE <- --set key=value <- flags`: the
flags `--steps` and `--batch-size` are derived from the `TrainSettings` fields they set. `--device`
and `--progress/--no-progress` are launch options (`pipeline.toolkit.launch.Launch`): this
process's, so `--resume` takes them too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from pipeline.toolkit.cliutil import user_errors
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.options import SettingsOptions, command_app, settings_command
from student.config import TrainSettings

app = command_app(
    help="Student training (stage 2): cross-context, multi-teacher distillation from cached "
    "label shards. Never loads a teacher.",
    no_args_is_help=True,
)


TRAIN_FLAGS = SettingsOptions(TrainSettings, fields=("steps", "batch_size"), overrides=True)
"""The settings `student train` also takes as flags; the others come from `--config` and `--set`."""


@app.command()
@user_errors
@settings_command
def train(
    out: Path = typer.Option(..., "--out", help="Run directory (config, metrics, checkpoints)."),
    dataset: Path = typer.Option(
        None,
        help="A dataset directory with the teachers' columns (with --resume: where the run's "
        "dataset moved; its images, plan and columns must be the ones RUN/inputs.json records).",
    ),
    teacher: list[str] = typer.Option(
        None, "--teacher", help="Label column to learn from (repeatable)."
    ),
    init: str = typer.Option(None, help="Depth Anything HF directory or hub id to start from."),
    flags: dict[str, Any] = TRAIN_FLAGS,
    config: Path = typer.Option(None, help="YAML settings file (see configs/)."),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a setting: --set loss.lambda_lg=0.5"
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the run in --out with its own config; with --steps N, to N steps in all "
        "(from the current step on, the learning-rate schedule is the one of N steps in all, "
        "no second warm-up; recorded in RUN/continued.yaml).",
    ),
    launch: Launch = SettingsOptions(Launch, fields=("device", "progress")),
) -> None:
    """Train a student; launch with `torchrun --nproc-per-node N --no-python student train ...`."""
    from pipeline.toolkit.config import load_config
    from student.train import finished_message, prepare_job, run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = None
    if resume:
        given = {
            "--teacher": teacher,
            "--init": init,
            **{TRAIN_FLAGS.flag(n): v for n, v in flags.items() if n != "steps"},
            "--config": config,
            "--set": set_,
        }
        ignored = [flag for flag, value in given.items() if value]
        if ignored:
            raise ValueError(
                f"--resume continues {out} with its own config.yaml (and --steps N to run it to "
                f"N steps in all); leave out {', '.join(ignored)} (to change settings, start a "
                "new run, e.g. --init from `student export`)"
            )
    else:
        settings = load_config(TrainSettings, config, list(set_ or []), values=flags)
    steps = flags.get("steps") if resume else None
    job = prepare_job(out, dataset, list(teacher or []), init, settings, resume, steps)
    finished = finished_message(job) if resume else None
    if finished:
        typer.echo(finished)
        return
    run_dir = run_training(job, resume=resume, launch=launch)
    typer.echo(f"run directory: {run_dir}\nnext: student export {run_dir} --out HF_DIR")


@app.command()
@user_errors
def export(
    run_dir: Path = typer.Argument(..., help="A run directory of `student train`."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Directory to write (published whole when complete; a non-empty one must be an "
        "export of this run, unless --overwrite).",
    ),
    step: int = typer.Option(None, help="Checkpoint step (default: the newest)."),
    format_: str = typer.Option(
        "hf",
        "--format",
        help="hf: a Hugging Face directory; onnx: model.onnx (dynamic batch, height, width) "
        "and preprocessing.json (needs the onnx extra).",
    ),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="onnx only: fp32, or fp16 (encoder and neck in float16, head in float32; input "
        "and output stay float32).",
    ),
    eval_: list[Path] = typer.Option(
        None,
        "--eval",
        metavar="DIR",
        help="An `evaluation run` --out directory (its summary.json) of this model: its "
        "results go into the model card (repeatable).",
    ),
    license_: str = typer.Option(
        None,
        "--license",
        help="License id for the card's metadata, e.g. apache-2.0 (default: the local init's "
        "card's license, if any).",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace --out even when it holds other files (everything in it is replaced).",
    ),
) -> None:
    """Write the run's student with a model card (README.md: init, teachers, dataset, steps,
    settings, results). hf: a directory transformers.pipeline('depth-estimation', model=DIR)
    loads; onnx: a model ONNX Runtime and TensorRT run (see preprocessing.json)."""
    from student.export import export_run

    evals = list(eval_ or [])
    written = export_run(run_dir, out, step, format_, precision, evals, license_, overwrite)
    typer.echo(f"exported {run_dir} to {written}")


@app.command()
@user_errors
@settings_command
def predict(
    model: Path = typer.Argument(
        ...,
        help="A run directory, an exported HF directory, or an ONNX export (runs on the CPU "
        "with onnxruntime).",
    ),
    images: list[Path] = typer.Argument(..., help="Image files."),
    out: Path = typer.Option(..., "--out", help="Where to write NAME.npy and NAME.png."),
    focal_px: float = typer.Option(
        None,
        "--focal-px",
        help="A metric student's camera: the focal length in pixels of the input images (default: "
        "each image's EXIF 35 mm-equivalent focal length, else the canonical camera is assumed). "
        "Relative models ignore it.",
    ),
    launch: Launch = SettingsOptions(Launch, fields=("device", "progress")),
) -> None:
    """Predict each image: `.npy` (float32, input size; disparity, or a metric student's depth
    in metres) and a colour `.png`. A metric student says per image which focal length it used."""
    from pipeline.toolkit.devices import resolve_device
    from pipeline.toolkit.progress import progress_bar
    from student.export import predict_files, predicts_metres

    device = str(resolve_device(launch.device))
    lines: list[str] = []
    with progress_bar(len(images), "predict", "images", enabled=launch.progress) as bar:
        done = lambda _: bar.update(1)  # noqa: E731
        written = predict_files(model, images, out, device, done, focal_px, lines.append)
    for line in lines:
        typer.echo(line)
    what = "metric depth in metres" if predicts_metres(model) else "disparity"
    typer.echo(f"wrote {len(written) // 2} prediction(s) (.npy and .png, {what}) to {out}")


if __name__ == "__main__":
    app()
