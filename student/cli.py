"""`student`: train, export and run the distilled student."""

import typer

app = typer.Typer(
    help="Student training (stage 2): cross-context, multi-teacher distillation from cached "
    "label shards. Never loads a teacher.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """Student commands (train, export, predict) arrive with the training loop."""
