"""`evaluation`: score teachers and students on the zero-shot depth benchmarks.

Thin commands over `evaluation.predict`, `evaluation.score`, `evaluation.report` and
`evaluation.crop_analysis`. `run` is `predict` then `score` into the same directory. The flags
of `PredictSettings` and `ScoreSettings` are derived from their fields (`pipeline.toolkit.options`).
The benchmarks the help names, and their layouts, are read from the loader registry
(`evaluation.datasets.DATASET_LOADERS`) each time the command line is built.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from typer.core import TyperCommand, TyperGroup

from evaluation.datasets import benchmarks_help, dataset_option_help
from evaluation.predict import PredictSettings
from evaluation.score import ScoreSettings
from pipeline.toolkit.cliutil import user_errors
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.options import SettingsOptions, command_app, settings_command

APP_HELP = (
    "Zero-shot evaluation of teachers and students on depth benchmarks with the Marigold "
    "protocol: predict, score, report."
)


class _EvaluationGroup(TyperGroup):
    """The app; its help ends with the registered benchmarks (`benchmarks_help`), read when
    typer builds the command line (at each run), not when this module is imported."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help = f"{APP_HELP}\n\n{benchmarks_help()}"


class _DatasetCommand(TyperCommand):
    """A command whose `dataset` parameter's help names the benchmarks registered when typer
    builds it (`dataset_option_help`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.name == "dataset":
                repeat = " Repeatable." if getattr(param, "multiple", False) else ""
                param.help = dataset_option_help() + repeat


app = command_app(help=APP_HELP, no_args_is_help=True, cls=_EvaluationGroup)
MODEL_HELP = (
    "A student run directory, a Hugging Face directory or hub id, or a teacher spec "
    "ADAPTER:SOURCE[,key=value] as labelgen accepts it."
)


def _datasets(texts: list[str] | None):
    from evaluation.datasets import open_dataset

    if not texts:
        raise ValueError("give at least one --dataset, e.g. --dataset middlebury")
    datasets = [open_dataset(text) for text in texts]
    for ds in datasets:  # e.g. a world train split (evaluation.datasets.world)
        if getattr(ds, "warning", None):
            typer.echo(f"warning: {ds.warning}", err=True)
    return datasets


def _predict(
    model: str,
    dataset,
    out: Path,
    settings: PredictSettings,
    launch: Launch,
    name: str | None,
    alignment: str | None = None,
    scored: bool = False,
):
    """Predict; `scored` (`evaluation run`): refuse an `alignment` the model cannot be scored
    with before predicting anything."""
    from evaluation.alignment import alignments_for, check_alignment
    from evaluation.models import load_predictor
    from evaluation.predict import predict
    from pipeline.toolkit.devices import resolve_device

    datasets = _datasets(dataset)
    device = str(resolve_device(launch.device))
    predictor = load_predictor(model, device, launch.precision, name)
    if scored:
        kind = predictor.teacher.output_kind
        for each in alignments_for(alignment, kind):
            check_alignment(each, predictor.pred_space, kind, predictor.name)
    record = predict(predictor, datasets, out, settings, launch)
    for ds_name, entry in record["datasets"].items():
        for bad in entry.get("unreadable", ()):
            typer.echo(f"{ds_name}: skipped unreadable sample {bad['key']}: {bad['error']}")
        focal = entry.get("focal")
        if focal:
            typer.echo(
                f"{ds_name}: focal length known for {focal['known']} of "
                f"{focal['known'] + focal['unknown']} images (the others: the model's own "
                "assumption or estimate)"
            )
    return datasets


def _score(out, datasets, settings: ScoreSettings, launch: Launch) -> None:
    from evaluation.score import score_all

    summary = score_all(out, datasets, settings, launch)
    alignments = summary["settings"]["alignments"]
    by_alignment = summary.get("by_alignment") or {alignments[0]: summary["datasets"]}
    several = len(alignments) > 1
    column = f" {'alignment':<11}" if several else ""
    typer.echo(f"{'dataset':<11}{column} {'samples':>7} {'scored':>6} {'AbsRel':>7} {'δ1':>6}")
    for ds_name in summary["datasets"]:
        for alignment in alignments:
            entry = by_alignment[alignment][ds_name]
            abs_rel, delta1 = entry["abs_rel"], entry["delta1"]
            shown = f" {alignment:<11}" if several else ""
            skipped = entry.get("unreadable")
            typer.echo(
                f"{ds_name:<11}{shown} {entry['samples']:>7} {entry['scored']:>6} "
                f"{'-' if abs_rel is None else f'{abs_rel:.4f}':>7} "
                f"{'-' if delta1 is None else f'{delta1:.4f}':>6}"
                + (f"  ({skipped} unreadable, skipped)" if skipped else "")
            )
    typer.echo(
        f"wrote {Path(out) / 'summary.json'} and per_sample.csv (alignment {', '.join(alignments)})"
    )


OUT_OPT = typer.Option(..., "--out", help="Evaluation directory (predictions, scores).")
MODEL_OPT = typer.Option(..., "--model", help=MODEL_HELP)
DATASET_OPT = typer.Option(None, "--dataset", help=dataset_option_help())  # see _DatasetCommand
NAME_OPT = typer.Option(None, "--name", help="Method name in reports (default: from the model).")
RUN_SCORE_FIELDS = ("score_space", "alignment", "figures", "name")
"""What `evaluation run` takes of `ScoreSettings`; the prediction space is the one just written,
and --skip-bad-samples (of `PredictSettings`) and the launch options serve both steps."""
CROP_FIELDS = ("processing_res",)
"""What `evaluation crop-analysis` takes of `PredictSettings`: it predicts one image at a time in
fp32 (the launch options' default)."""
PREDICT_LAUNCH = SettingsOptions(Launch, fields=("device", "workers", "precision", "progress"))
"""Predicting: the protocol's precision is fp32 (`Launch`'s default)."""
SCORE_LAUNCH = SettingsOptions(Launch, fields=("device", "workers", "progress"))


@app.command("check-data", cls=_DatasetCommand)
@user_errors
def check_data(
    dataset: str = typer.Argument(..., help=dataset_option_help()),
    full: bool = typer.Option(False, "--full", help="Decode every sample, not only the first."),
) -> None:
    """Validate a benchmark dataset and print its counts."""
    from evaluation.datasets import check_data as check

    report = check(dataset, full=full)
    for key, value in report.items():
        typer.echo(f"{key}: {value}")


@app.command(cls=_DatasetCommand)
@user_errors
@settings_command
def predict(
    model: str = MODEL_OPT,
    dataset: list[str] = DATASET_OPT,
    out: Path = OUT_OPT,
    settings: PredictSettings = SettingsOptions(PredictSettings),
    name: str = NAME_OPT,
    launch: Launch = PREDICT_LAUNCH,
) -> None:
    """Write one raw prediction (.npy) per sample; a re-run predicts only what is missing."""
    _predict(model, dataset, out, settings, launch, name)
    typer.echo(f"predictions in {out}/predictions; next: evaluation score {out} --dataset ...")


@app.command(cls=_DatasetCommand)
@user_errors
@settings_command
def score(
    out: Path = typer.Argument(..., help="Evaluation directory holding predictions/."),
    dataset: list[str] = DATASET_OPT,
    settings: ScoreSettings = SettingsOptions(ScoreSettings),
    launch: Launch = SCORE_LAUNCH,
) -> None:
    """Score prediction files (from `evaluation predict` or elsewhere) with the protocol (on a
    CUDA --device the workers only read files; on the CPU they score)."""
    _score(out, _datasets(dataset), settings, launch)


@app.command(cls=_DatasetCommand)
@user_errors
@settings_command
def run(
    model: str = MODEL_OPT,
    dataset: list[str] = DATASET_OPT,
    out: Path = OUT_OPT,
    predict_settings: PredictSettings = SettingsOptions(PredictSettings),
    score_settings: ScoreSettings = SettingsOptions(ScoreSettings, fields=RUN_SCORE_FIELDS),
    launch: Launch = PREDICT_LAUNCH,
) -> None:
    """Predict and score: per-sample predictions, per_sample.csv and summary.json in --out.

    --workers, --device and --skip-bad-samples serve both steps."""
    name, alignment = score_settings.name, score_settings.alignment
    datasets = _predict(model, dataset, out, predict_settings, launch, name, alignment, True)
    skip = predict_settings.skip_bad_samples
    _score(out, datasets, dataclasses.replace(score_settings, skip_bad_samples=skip), launch)


@app.command()
@user_errors
def report(
    dirs: list[Path] = typer.Argument(..., help="Evaluation directories (with summary.json)."),
    out: Path = typer.Option(Path("report.md"), "--out", help="Markdown file; .csv/.json beside."),
) -> None:
    """The paper's Table 4/5 layout: methods × datasets, AbsRel and δ1, best in bold, avg rank."""
    from evaluation.report import build_table, load_summaries
    from evaluation.report_files import write_report

    table = build_table(load_summaries(list(dirs)))
    write_report(table, out)
    typer.echo(out.read_text())
    typer.echo(f"wrote {out}, {out.with_suffix('.csv')} and {out.with_suffix('.json')}")


@app.command("crop-analysis", cls=_DatasetCommand)
@user_errors
@settings_command
def crop_analysis(
    model: str = MODEL_OPT,
    dataset: list[str] = DATASET_OPT,
    out: Path = typer.Option(
        Path("crop-analysis"), "--out", help="Directory for predictions and crop_analysis.json."
    ),
    settings: PredictSettings = SettingsOptions(PredictSettings, fields=CROP_FIELDS),
    launch: Launch = SettingsOptions(Launch, fields=("device", "workers", "progress")),
) -> None:
    """The paper's Figure 2: global vs local least squares on the central (w/2, h/2) crop."""
    from evaluation.crop_analysis import analyse_crops
    from evaluation.predict import read_predictions_json

    datasets = _predict(model, dataset, out, settings, launch, None)
    pred_space = read_predictions_json(out)["pred_space"]
    result = analyse_crops(out, datasets, pred_space, launch.progress)
    typer.echo(f"{'dataset':<11} {'global AbsRel':>13} {'local AbsRel':>12} {'local better':>12}")
    for name, entry in result["datasets"].items():
        g, loc = entry["global"]["abs_rel"], entry["local"]["abs_rel"]
        frac = entry["local_better_fraction"]
        if g is None:
            typer.echo(f"{name:<11} no sample with a scored central crop")
            continue
        typer.echo(f"{name:<11} {g:>13.4f} {loc:>12.4f} {frac:>11.0%}")
    typer.echo(f"wrote {Path(out) / 'crop_analysis.json'}")


if __name__ == "__main__":
    app()
