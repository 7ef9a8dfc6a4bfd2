"""`labelgen`: run teachers over a prepared dataset and write their label columns."""

import typer

app = typer.Typer(
    help="Label generation (stage 1): run each teacher once over the full images, the planned "
    "regions and their tiles, and write one compressed label column per teacher.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """Label generation commands (run, estimate, tiny-checkpoint) arrive with the teacher registry."""
