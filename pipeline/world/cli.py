"""`pipeline world`: render procedural scenes with exact depth (mounted by `pipeline.cli`)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.toolkit.cliutil import user_errors
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.options import SettingsOptions, command_app, settings_command
from pipeline.world.degradation import Degradation

world_app = command_app(
    help="Procedural 3D worlds with exact per-pixel depth: a train split `pipeline prepare` "
    "takes as it is, and a test split `evaluation --dataset world=DIR` scores on.",
    no_args_is_help=True,
)


@world_app.command("render")
@user_errors
@settings_command
def render_command(
    out: Path = typer.Option(..., "--out", help="Folder of the split (created; resumable)."),
    images: int = typer.Option(..., "--images", help="Images 0..N-1 of the split."),
    seed: int = typer.Option(
        0, "--seed", help="Scene seed: the same (seed, split, index) gives the same bytes."
    ),
    split: str = typer.Option("train", "--split", help="train or test: they never share a scene."),
    height: int = typer.Option(1500, "--height", help="Image height in pixels (SA-1B-like)."),
    width: int = typer.Option(2250, "--width", help="Image width in pixels."),
    samples: int = typer.Option(
        1, "--samples", help="Colour rays per pixel side (k: k x k, anti-aliased); depth: centre."
    ),
    launch: Launch = SettingsOptions(Launch, fields=("workers", "progress")),
) -> None:
    """Render N scenes: RGB PNG, z-depth and mask (.npy) and the scene (.json) per image.

    Images already written with the same settings are skipped, so an interrupted run resumes.
    """
    from pipeline.world.files import WorldSettings, render_world

    settings = WorldSettings(seed=seed, split=split, height=height, width=width, samples=samples)
    result = render_world(out, images, settings, launch.workers, launch.progress)
    typer.echo(result.summary())


@world_app.command("labels")
@user_errors
@settings_command
def labels_command(
    dataset: Path = typer.Option(..., "--dataset", help="A dataset prepared from a world split."),
    world: Path = typer.Option(
        ..., "--world", help="The split folder the dataset was prepared from (its scene records)."
    ),
    column: str = typer.Option(..., "--column", help="Label column to write, e.g. world-exact."),
    degradation: Degradation = SettingsOptions(Degradation),
    full_side: int = typer.Option(
        None, "--full-side", help="Short side of the `full` labels; unset: the plan's tile side."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a column made otherwise."),
    launch: Launch = SettingsOptions(Launch, fields=("progress",)),
) -> None:
    """Write a label column of the world's exact depth for every planned view (no degradation),
    or a degraded one (disparity; see `pipeline.world.labels`). Done shards are kept."""
    from pipeline.world.labels import write_world_column

    deg = degradation
    written = write_world_column(
        dataset, world, column, deg, full_side, overwrite=overwrite, progress=launch.progress
    )
    kind = "exact depth" if deg.exact else f"degraded disparity ({deg.options()})"
    typer.echo(f"{column}: {kind}; wrote {len(written)} shards")
