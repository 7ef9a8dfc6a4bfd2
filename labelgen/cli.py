"""`labelgen`: run teachers over a prepared dataset and write their label columns.

Thin commands: parse flags, call one library function.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from pipeline.toolkit.cliutil import user_errors

app = typer.Typer(
    help="Label generation (stage 1): run each teacher once over the full images, the planned "
    "regions and their tiles, and write one compressed label column per teacher.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

TEACHER_HELP = (
    "NAME=ADAPTER:SOURCE[,key=value...]: NAME is the label column, ADAPTER one of "
    "depth-anything-v2, dpt, genpercept, marigold, hf; SOURCE a local directory or hub id. "
    "Repeatable. Example: dav2-l=depth-anything-v2:depth-anything/Depth-Anything-V2-Large-hf"
)


def _specs(teacher: list[str] | None, teachers_file: Path | None) -> list:
    from labelgen.teachers import load_teacher_specs_yaml, parse_teacher_spec

    specs = [parse_teacher_spec(t) for t in teacher or []]
    if teachers_file is not None:
        specs += load_teacher_specs_yaml(teachers_file)
    if not specs:
        raise ValueError("no teacher given: pass --teacher NAME=ADAPTER:SOURCE (repeatable)")
    return specs


@app.command()
@user_errors
def run(
    dataset: Path = typer.Option(..., help="A prepared dataset directory."),
    teacher: list[str] = typer.Option(None, "--teacher", help=TEACHER_HELP),
    teachers_file: Path = typer.Option(
        None, help="YAML list of teachers (name, adapter, source, options)."
    ),
    format: str = typer.Option("wds", "--format", help="Label backend: wds or zarr."),
    codec: str = typer.Option(
        "pcodec-f16", help="Label codec: pcodec-f16, blosc-zstd-f16, pcodec-f32."
    ),
    batch_size: int = typer.Option(16, help="Views per forward pass (halved on out-of-memory)."),
    precision: str = typer.Option("bf16", help="bf16, fp16 or fp32 (CPU always runs fp32)."),
    device: str = typer.Option("auto", help="Torch device; auto = cuda:LOCAL_RANK or cpu."),
    workers: int = typer.Option(4, help="DataLoader workers decoding images and building views."),
    encode_threads: int = typer.Option(4, help="Threads compressing labels in the background."),
    claim: bool = typer.Option(
        False,
        "--claim",
        help="Claim shards with expiring lock files instead of a static split by rank.",
    ),
    claim_ttl: float = typer.Option(
        900.0, help="Seconds before an unrefreshed claim is taken over."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace a column whose teacher weights, options, precision, codec or backend "
        "changed.",
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    redo: list[str] = typer.Option(
        None,
        "--redo",
        help="Relabel these shards of every given teacher even if done, e.g. one `pipeline "
        "verify` found corrupt: SHARD[,SHARD...] or FIRST-LAST (repeatable).",
    ),
) -> None:
    """Label every (teacher, shard) item not yet done; safe to kill and re-run.

    Work is split by RANK/WORLD_SIZE (torchrun) or SLURM variables, or claimed with --claim.
    """
    from labelgen.run import run as run_labels
    from labelgen.settings import RunSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = RunSettings(
        format=format,
        codec=codec,
        batch_size=batch_size,
        precision=precision,
        device=device,
        workers=workers,
        encode_threads=encode_threads,
        claim=claim,
        claim_ttl=claim_ttl,
        overwrite=overwrite,
        progress=progress,
    )
    reports = run_labels(dataset, _specs(teacher, teachers_file), settings, redo=redo or None)
    for report in reports:
        typer.echo(report.summary())
    if any(r.shards_failed for r in reports):
        raise typer.Exit(1)


@app.command()
@user_errors
def estimate(
    dataset: Path = typer.Option(..., help="A prepared dataset directory."),
    teacher: list[str] = typer.Option(None, "--teacher", help=TEACHER_HELP),
    teachers_file: Path = typer.Option(None, help="YAML list of teachers."),
    sample: int = typer.Option(8, help="Images of the first shard to label for the estimate."),
    format: str = typer.Option("wds", "--format", help="Label backend: wds or zarr."),
    codec: str = typer.Option("pcodec-f16", help="Label codec."),
    batch_size: int = typer.Option(16, help="Views per forward pass."),
    precision: str = typer.Option("bf16", help="bf16, fp16 or fp32 (CPU always runs fp32)."),
    device: str = typer.Option("auto", help="Torch device; auto = cuda or cpu."),
    workers: int = typer.Option(2, help="DataLoader workers."),
) -> None:
    """Label a small sample, then print views and bytes per image per teacher and the projected
    disk and device-hours for the whole dataset on this device. Writes nothing to the dataset."""
    from labelgen.estimate import estimate_teacher, format_estimates
    from labelgen.settings import RunSettings
    from pipeline.toolkit.devices import resolve_device

    if sample < 1:
        raise ValueError(f"--sample must be ≥ 1, got {sample}")
    settings = RunSettings(
        format=format,
        codec=codec,
        batch_size=batch_size,
        precision=precision,
        device=device,
        workers=workers,
        progress=False,
    )
    settings.validate()
    specs = _specs(teacher, teachers_file)
    estimates = [estimate_teacher(dataset, spec, settings, sample) for spec in specs]
    typer.echo(format_estimates(estimates, str(resolve_device(device))))


@app.command("tiny-checkpoint")
@user_errors
def tiny_checkpoint(
    adapter: str = typer.Argument(..., help="depth-anything-v2, dpt, genpercept, marigold or hf."),
    out_dir: Path = typer.Argument(..., help="Directory to write the checkpoint to."),
    seed: int = typer.Option(0, help="Seed of the random initialisation (same seed, same bytes)."),
) -> None:
    """Write a tiny randomly initialised checkpoint of the adapter's real architecture.

    It loads through the normal adapter (`from_pretrained(OUT_DIR)`), for tests, the demo and
    benchmarks. It predicts no real depth.
    """
    from labelgen.teachers import tiny_spec, write_tiny_checkpoint

    path = write_tiny_checkpoint(adapter, out_dir, seed=seed)
    typer.echo(f"wrote a tiny {adapter} checkpoint to {path}")
    typer.echo(f"use it as: --teacher {tiny_spec('tiny-' + adapter, adapter, path)}")


if __name__ == "__main__":
    app()
