"""Every command's --help runs; `pipeline prepare` end to end through the CLI."""

from __future__ import annotations

import json

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from evaluation.cli import app as evaluation_app
from labelgen.cli import app as labelgen_app
from pipeline.cli import app as pipeline_app
from student.cli import app as student_app

runner = CliRunner()
APPS = {
    "pipeline": pipeline_app,
    "labelgen": labelgen_app,
    "student": student_app,
    "evaluation": evaluation_app,
}


def _command_paths(app: typer.Typer) -> list[list[str]]:
    """Every command path of an app, e.g. [[], ["prepare"], ["bench"], ["bench", "codecs"]]."""
    paths: list[list[str]] = [[]]

    def walk(cmd, prefix):
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(get_command(app), [])
    return paths


@pytest.mark.parametrize("name", sorted(APPS))
def test_every_help_runs(name):
    app = APPS[name]
    for path in _command_paths(app):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (name, path, result.output)
        assert "Usage" in result.output


def test_prepare_through_the_cli_records_rejected_images(photo_folder, tmp_path):
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "ds"
    result = runner.invoke(
        pipeline_app,
        [
            "prepare",
            "--images",
            str(photo_folder),
            "--out",
            str(out),
            "--shard-size",
            "3",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "5 images" in result.output and "1 rejected" in result.output
    info = json.loads((out / "dataset.json").read_text())
    assert [r["origin"].endswith("broken.jpg") for r in info["rejected"]] == [True]
    assert [s["count"] for s in info["shards"]] == [3, 2]


def test_prepare_bad_flag_is_a_clear_error(photo_folder, tmp_path):
    result = runner.invoke(
        pipeline_app,
        [
            "prepare",
            "--images",
            str(photo_folder),
            "--out",
            str(tmp_path / "ds"),
            "--shard-size",
            "0",
        ],
    )
    assert result.exit_code == 2
    assert "--shard-size" in result.output and "Traceback" not in result.output


def test_benchmarks_run_from_the_cli():
    codecs = runner.invoke(pipeline_app, ["bench", "codecs", "--repeats", "1"])
    assert codecs.exit_code == 0, codecs.output
    assert "pcodec-f16" in codecs.output and "B/px" in codecs.output
    prep = runner.invoke(pipeline_app, ["bench", "prepare", "--images", "2", "--repeats", "1"])
    assert prep.exit_code == 0, prep.output
    assert "prepare / decode" in prep.output
