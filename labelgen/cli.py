"""`labelgen`: run teachers over a prepared dataset and write their label columns.

Thin commands: parse flags, call one library function. The flags of `RunSettings` are derived
from its fields (`pipeline.toolkit.options`): their defaults and help live there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import typer

from labelgen.missing import DEFAULT_MAX_ARRAY
from labelgen.settings import LAUNCH_DEFAULTS, RunSettings
from pipeline.toolkit.cliutil import user_errors
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.options import SettingsOptions, command_app, settings_command

app = command_app(
    help="Label generation (stage 1): run each teacher once over the full images, the planned "
    "regions and their tiles, and write one compressed label column per teacher.",
    no_args_is_help=True,
)

TEACHER_SYNTAX = "NAME=ADAPTER:SOURCE[,key=value...]"
TEACHER_HELP = (
    f"A teacher, {TEACHER_SYNTAX} (repeatable): NAME is the label column, ADAPTER one of "
    "depth-anything-v2, dpt, genpercept, marigold, hf; SOURCE a local directory or hub id, "
    "optionally followed by the adapter's options. Example below."
)
TEACHER_EXAMPLE = (
    "Example: a teacher from the Hugging Face Hub, labelling column dav2-l:\n\n"
    "\b\n--teacher dav2-l=depth-anything-v2:depth-anything/Depth-Anything-V2-Large-hf"
)
"""The end of `run --help` and `estimate --help`: kept on one line (`\\b`), never wrapped."""
TEACHER_OPTION = typer.Option(None, "--teacher", metavar="NAME=ADAPTER:SOURCE", help=TEACHER_HELP)


def _specs(teacher: list[str] | None, teachers_file: Path | None) -> list:
    from labelgen.teachers import load_teacher_specs_yaml, parse_teacher_spec

    specs = [parse_teacher_spec(t) for t in teacher or []]
    if teachers_file is not None:
        specs += load_teacher_specs_yaml(teachers_file)
    if not specs:
        raise ValueError("no teacher given: pass --teacher NAME=ADAPTER:SOURCE (repeatable)")
    return specs


EXIT_NOT_COMPLETE = 3
"""`labelgen run`'s exit status when the column is not complete yet: shards held by other
`--claim` workers (distinct from 1, a failed shard, and 2, a user error); `labelgen missing`'s
when shards are left to label."""

ESTIMATE_FIELDS = ("format", "codec", "batch_size")
"""What `labelgen estimate` takes of `RunSettings`: the rest concerns a whole run (claims,
overwriting a column, background compression)."""
RUN_LAUNCH = SettingsOptions(Launch, defaults=LAUNCH_DEFAULTS)
"""`labelgen run`'s launch options: all of them, teachers in bf16 on GPU by default."""
ESTIMATE_LAUNCH = SettingsOptions(
    Launch, fields=("device", "workers", "precision"), defaults=LAUNCH_DEFAULTS
)


@app.command(epilog=TEACHER_EXAMPLE)
@user_errors
@settings_command
def run(
    dataset: Path = typer.Option(..., help="A prepared dataset directory."),
    teacher: list[str] = TEACHER_OPTION,
    teachers_file: Path = typer.Option(
        None, help="YAML list of teachers (name, adapter, source, options)."
    ),
    settings: RunSettings = SettingsOptions(RunSettings),
    launch: Launch = RUN_LAUNCH,
    redo: list[str] = typer.Option(
        None,
        "--redo",
        help="Relabel these shards of every given teacher even if done, e.g. one `pipeline "
        "verify` found corrupt: SHARD[,SHARD...] or FIRST-LAST (repeatable).",
    ),
    shards: list[str] = typer.Option(
        None,
        "--shards",
        help="Label only these shards (done ones are skipped), split between the workers in "
        "this order: SHARD[,SHARD...] or FIRST-LAST (repeatable); what `labelgen missing` "
        "prints.",
    ),
) -> None:
    """Label every (teacher, shard) item not yet done; safe to kill and re-run.

    Work is split by RANK/WORLD_SIZE (torchrun) or SLURM variables, or claimed with --claim;
    --tasks-per-job N makes each process run the shares of N workers one after another.

    Exit status: 0 done; 1 a shard failed (recorded; a re-run redoes it); 2 bad input (one
    `error:` line); 3 not complete yet: with --claim, shards are held by other workers (run
    again after their locks expire, as the summary says).
    """
    from labelgen.run import run as run_labels

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    specs = _specs(teacher, teachers_file)
    reports = run_labels(
        dataset, specs, settings, redo=redo or None, launch=launch, shards=shards or None
    )
    for report in reports:
        typer.echo(report.summary())
    if any(r.shards_failed for r in reports):
        raise typer.Exit(1)
    if any(r.shards_held for r in reports):
        raise typer.Exit(EXIT_NOT_COMPLETE)


@app.command(epilog=TEACHER_EXAMPLE)
@user_errors
def missing(
    dataset: Path = typer.Option(..., help="A prepared dataset directory."),
    teacher: list[str] = TEACHER_OPTION,
    teachers_file: Path = typer.Option(None, help="YAML list of teachers."),
    verify: bool = typer.Option(
        False, help="Also checksum every done shard, as `pipeline verify` does (reads them all)."
    ),
    max_array: int = typer.Option(
        DEFAULT_MAX_ARRAY,
        help="Most tasks of the printed SLURM array; a longer list runs several shards per task "
        "(--tasks-per-job).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List, per teacher column, the shards missing, failed or damaged, and print the
    `labelgen run --shards ...` command and the SLURM array (`sbatch --array=...
    docker/slurm_labelgen.sbatch`) that label exactly those.

    Exit status: 0 nothing left to label; 3 shards left (a job script can resubmit and loop);
    2 bad input.
    """
    from labelgen.missing import find_missing

    specs = _specs(teacher, teachers_file)
    report = find_missing(dataset, specs, None if teacher else teachers_file, verify, max_array)
    typer.echo(json.dumps(report.as_dict(), indent=2) if json_out else report.format())
    if not report.complete:
        raise typer.Exit(EXIT_NOT_COMPLETE)


@app.command(epilog=TEACHER_EXAMPLE)
@user_errors
@settings_command
def estimate(
    dataset: Path = typer.Option(..., help="A prepared dataset directory."),
    teacher: list[str] = TEACHER_OPTION,
    teachers_file: Path = typer.Option(None, help="YAML list of teachers."),
    sample: int = typer.Option(8, help="Images of the first shard to label for the estimate."),
    settings: RunSettings = SettingsOptions(RunSettings, fields=ESTIMATE_FIELDS),
    launch: Launch = ESTIMATE_LAUNCH,
) -> None:
    """Label a small sample, then print views and bytes per image per teacher and the projected
    disk and device-hours for the whole dataset on this device. Writes nothing to the dataset."""
    from labelgen.estimate import estimate_teacher, format_estimates
    from pipeline.toolkit.devices import resolve_device

    if sample < 1:
        raise ValueError(f"--sample must be ≥ 1, got {sample}")
    launch = dataclasses.replace(launch, progress=False)
    specs = _specs(teacher, teachers_file)
    estimates = [estimate_teacher(dataset, spec, settings, sample, launch) for spec in specs]
    typer.echo(format_estimates(estimates, str(resolve_device(launch.device))))


@app.command("tiny-checkpoint")
@user_errors
def tiny_checkpoint(
    adapter: str = typer.Argument(
        ..., help="depth-anything-v2, dpt, genpercept, marigold, zoedepth, depth-pro or hf."
    ),
    out_dir: Path = typer.Argument(..., help="Directory to write the checkpoint to."),
    seed: int = typer.Option(0, help="Seed of the random initialisation (same seed, same bytes)."),
    size: str = typer.Option(
        "tiny",
        help="Architecture size: tiny (tests, demo), mini (studies), small, large, full; dpt"
        " families: tiny-hybrid, hybrid, tiny-beit, beit-large-512, beit-large-384, beit-base-384,"
        " tiny-swinv2, swinv2-tiny-256, swinv2-base-384, swinv2-large-384; metric Depth Anything:"
        " tiny-metric-indoor, tiny-metric-outdoor (also small-, large-).",
    ),
) -> None:
    """Write a randomly initialised checkpoint of the adapter's real architecture (tiny by
    default).

    It loads through the normal adapter (`from_pretrained(OUT_DIR)`), for tests, the demo,
    benchmarks and as the initialisation of students or teachers trained from scratch. It
    predicts no real depth.
    """
    from labelgen.teachers import tiny_spec, write_checkpoint

    path = write_checkpoint(adapter, out_dir, size, seed=seed)
    typer.echo(f"wrote a {size} {adapter} checkpoint to {path}")
    typer.echo(f"use it as: --teacher {tiny_spec(size + '-' + adapter, adapter, path)}")


if __name__ == "__main__":
    app()
