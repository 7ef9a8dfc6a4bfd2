"""`pipeline`: prepare a dataset directory, inspect and verify it, run the demo and benchmarks.

Thin commands: each parses its flags and calls one library function. The flags of `prepare` are
derived from the fields of `PrepareSettings` (`pipeline.toolkit.options`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer

from pipeline.bench import BENCHMARKS
from pipeline.dataset.prepare import PrepareSettings
from pipeline.labels.quality import DEFAULT_MAX_UNUSABLE
from pipeline.toolkit.cliutil import user_errors
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.options import SettingsOptions, command_app, settings_command
from pipeline.world.cli import world_app

app = command_app(
    help="Dataset directories shared by both stages: prepare images into shards and a crop plan, "
    "show which label columns exist, verify every byte, run the demo and benchmarks.",
    no_args_is_help=True,
)
MAX_UNUSABLE = typer.Option(
    DEFAULT_MAX_UNUSABLE,
    "--max-unusable",
    min=0.0,
    max=1.0,
    help="A column whose unusable maps (no finite value, or one value everywhere) exceed this "
    "fraction of its maps is bad: its teacher's output is broken.",
)
bench_app = command_app(help="Benchmarks whose results go in BENCHMARKS.md.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(world_app, name="world")


@app.command()
@user_errors
@settings_command
def prepare(
    images: list[str] = typer.Option(
        ...,
        "--images",
        help="A folder of images (recursive), a WebDataset or SA-1B tar, or a glob. Repeatable.",
    ),
    out: Path = typer.Option(..., "--out", help="The dataset directory to write."),
    settings: PrepareSettings = SettingsOptions(PrepareSettings),
    launch: Launch = SettingsOptions(Launch, fields=("workers", "progress")),
) -> None:
    """Turn images into image shards, a crop plan and dataset.json under --out.

    Bad images are recorded in dataset.json under 'rejected' with the reason; the run goes on.
    """
    from pipeline.dataset.prepare import prepare as run_prepare

    result = run_prepare(images, out, settings, launch.progress, launch.workers)
    typer.echo(result.summary())


@app.command()
@user_errors
def status(
    dataset: Path = typer.Argument(..., help="A prepared dataset directory."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    max_unusable: float = MAX_UNUSABLE,
) -> None:
    """Columns x shards: done / failed / missing / foreign (made for another dataset), samples,
    bytes, bytes per label pixel, unusable and flagged maps."""
    from pipeline.dataset.status import dataset_status, format_status

    result = dataset_status(dataset, max_unusable)
    typer.echo(json.dumps(result, indent=1) if as_json else format_status(result))


@app.command()
@user_errors
@settings_command
def verify(
    dataset: Path = typer.Argument(..., help="A prepared dataset directory."),
    column: list[str] = typer.Option(
        None, "--column", help="Only this label column (repeatable); default: all columns."
    ),
    max_unusable: float = MAX_UNUSABLE,
    launch: Launch = SettingsOptions(Launch, fields=("progress",)),
) -> None:
    """Re-read every shard, check checksums, keys and plan hash, decode every map, and check
    that each column's maps are usable (a broken teacher's are not).

    Exits 0 only if everything is intact; otherwise names each bad shard and why.
    """
    from pipeline.dataset.verify import verify_dataset

    report = verify_dataset(
        dataset, column or None, max_unusable=max_unusable, progress=launch.progress
    )
    for problem in report.problems:
        typer.echo(f"BAD {problem}", err=True)
    typer.echo(report.summary())
    raise typer.Exit(0 if report.ok else 1)


@app.command()
@user_errors
@settings_command
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Where the demo writes everything."),
    launch: Launch = SettingsOptions(Launch, fields=("device",)),
) -> None:
    """Run the method end to end on bundled sample photos, offline (--device: where the
    teachers label)."""
    from pipeline.demo import run_demo

    run_demo(out, device=launch.device)


def _bench_command(name: str, module: str, summary: str) -> None:
    """One `pipeline bench NAME` command: its arguments go to the benchmark module unparsed."""

    def command(ctx: typer.Context) -> None:
        done = subprocess.run([sys.executable, "-m", module, *ctx.args])
        raise typer.Exit(done.returncode)

    settings = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    bench_app.command(
        name,
        help=f"{summary} (`python -m {module}`; --help lists its flags)",
        context_settings=settings,
        add_help_option=False,
    )(command)


for _bench in BENCHMARKS.values():
    _bench_command(_bench.name, _bench.module, _bench.summary)


if __name__ == "__main__":
    app()
