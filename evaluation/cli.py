"""`evaluation`: score teachers and students on the zero-shot depth benchmarks."""

import typer

app = typer.Typer(
    help="Zero-shot evaluation of teachers and students (NYUv2, KITTI, ETH3D, ScanNet, DIODE, "
    "Middlebury) with the Marigold protocol.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """Evaluation commands (run, predict, score, report) arrive with the protocol library."""


if __name__ == "__main__":
    app()
