"""Every command's --help runs and explains the options derived from the settings classes with
their defaults; `pipeline prepare` end to end through the CLI."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from evaluation.cli import CROP_FIELDS, RUN_SCORE_FIELDS
from evaluation.cli import app as evaluation_app
from evaluation.predict import PredictSettings
from evaluation.score import ScoreSettings
from labelgen.cli import ESTIMATE_FIELDS, TEACHER_SYNTAX
from labelgen.cli import app as labelgen_app
from labelgen.settings import LAUNCH_DEFAULTS, RunSettings
from pipeline.cli import app as pipeline_app
from pipeline.dataset.prepare import PrepareSettings
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.options import OVERRIDE_NOTE
from pipeline.toolkit.settings_doc import field_docs
from pipeline.world.cli import world_app
from student.cli import app as student_app
from student.config import TrainSettings

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
        if name == "pipeline" and path[:1] == ["bench"] and len(path) == 2:
            continue  # a benchmark's own process prints its help (tested below)
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (name, path, result.output)
        assert "Usage" in result.output


@pytest.mark.parametrize("name", sorted(APPS))
def test_help_fits_80_columns_without_cut_words_or_bool_values(name, monkeypatch):
    """At 80 columns each option's help wraps under its flag: no word is cut with "…", no line
    is wider, and a switch shows no `<bool>` value (typer's Rich panels did all three)."""
    monkeypatch.setenv("COLUMNS", "80")
    app = APPS[name]
    for path in _command_paths(app):
        if name == "pipeline" and path[:1] == ["bench"] and len(path) == 2:
            continue
        output = runner.invoke(app, [*path, "--help"]).output
        wide = [line for line in output.splitlines() if len(line) > 80]
        assert not wide and "…" not in output and "<bool>" not in output, (path, output)


@pytest.mark.parametrize("command", ["run", "estimate"])
def test_teacher_syntax_and_example_are_whole_at_80_columns(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    output = runner.invoke(labelgen_app, [command, "--help"]).output
    assert "--teacher NAME=ADAPTER:SOURCE" in output
    assert TEACHER_SYNTAX in " ".join(output.split())
    example = "--teacher dav2-l=depth-anything-v2:depth-anything/Depth-Anything-V2-Large-hf"
    assert example in output.splitlines()[-1]


ALL = None
DERIVED = [  # (app, command, settings class, the fields it takes (None: all), overrides)
    (labelgen_app, "run", RunSettings, ALL, False),
    (labelgen_app, "estimate", RunSettings, ESTIMATE_FIELDS, False),
    (pipeline_app, "prepare", PrepareSettings, ALL, False),
    (evaluation_app, "predict", PredictSettings, ALL, False),
    (evaluation_app, "score", ScoreSettings, ALL, False),
    (evaluation_app, "run", PredictSettings, ALL, False),
    (evaluation_app, "run", ScoreSettings, RUN_SCORE_FIELDS, False),
    (evaluation_app, "crop-analysis", PredictSettings, CROP_FIELDS, False),
    (student_app, "train", TrainSettings, ("steps", "batch_size"), True),
]
LAUNCHED = [  # (app, command, the launch options it takes[, the command's own defaults])
    (pipeline_app, "prepare", ("workers", "progress")),
    (pipeline_app, "demo", ("device",)),
    (pipeline_app, "verify", ("progress",)),
    (labelgen_app, "run", ("device", "workers", "precision", "progress"), LAUNCH_DEFAULTS),
    (labelgen_app, "estimate", ("device", "workers", "precision"), LAUNCH_DEFAULTS),
    (world_app, "render", ("workers", "progress")),
    (world_app, "labels", ("progress",)),
    (student_app, "train", ("device", "progress")),
    (student_app, "predict", ("device",)),
    (evaluation_app, "predict", ("device", "workers", "precision", "progress")),
    (evaluation_app, "score", ("device", "workers", "progress")),
    (evaluation_app, "run", ("device", "workers", "precision", "progress")),
    (evaluation_app, "crop-analysis", ("device", "workers")),
]
DERIVED += [  # a settings instance: the command's defaults
    (app, command, Launch(**(own[0] if own else {})), fields, False)
    for app, command, fields, *own in LAUNCHED
]


def _help_rows(app: typer.Typer, command: str, monkeypatch) -> dict[str, str]:
    """First flag -> its row of `COMMAND --help` at 80 columns (an option's wrapped lines joined,
    whitespace collapsed, a word wrapped at its hyphen whole again)."""
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    rows: dict[str, str] = {}
    flag = None
    for line in result.output.splitlines():
        if line.startswith("  --"):
            flag = line.split()[0]
            rows[flag] = " ".join(line.split())
        elif flag and line.startswith("   "):
            # the help is wrapped after a hyphen too (`scale-` / `shift`): no space is added there
            glue = "" if re.search(r"\w-$", rows[flag]) else " "
            rows[flag] += glue + " ".join(line.split())
        else:
            flag = None
    return rows


def _shown_default(name: str, default, overrides: bool) -> str | None:
    """What typer prints for a default: `[default: 4]`, `[default: progress]` for a bool that
    is on, nothing for an off switch or None; `[default: (4)]` for an override flag."""
    if overrides:
        return f"[default: ({default})]"
    if default is None or default is False:
        return None
    return f"[default: {name}]" if default is True else f"[default: {default}]"


@pytest.mark.parametrize(
    ("app", "command", "cls", "fields", "overrides"),
    DERIVED,
    ids=[f"{c}-{getattr(cls, '__name__', type(cls).__name__)}" for _, c, cls, _, _ in DERIVED],
)
def test_help_explains_every_derived_option_with_the_dataclass_default(
    app, command, cls, fields, overrides, monkeypatch
):
    rows = _help_rows(app, command, monkeypatch)
    defaults = cls() if isinstance(cls, type) else cls
    cls, docs = type(defaults), field_docs(type(defaults))
    for name in fields or [f.name for f in dataclasses.fields(cls)]:
        flag = "--" + name.replace("_", "-")
        assert flag in rows, (command, flag, sorted(rows))
        assert docs[name] in rows[flag], (command, flag, rows[flag])
        assert not overrides or OVERRIDE_NOTE in rows[flag]
        shown = _shown_default(name, getattr(defaults, name), overrides)
        assert shown is None or shown in rows[flag], (command, flag, shown, rows[flag])


def test_estimate_takes_the_workers_default_of_run(monkeypatch):
    run = _help_rows(labelgen_app, "run", monkeypatch)["--workers"]
    estimate = _help_rows(labelgen_app, "estimate", monkeypatch)["--workers"]
    assert Launch().workers is None and "min(4, usable CPUs)" in run and run == estimate
    assert "--claim" not in _help_rows(labelgen_app, "estimate", monkeypatch)


SHARED = [  # every command with a --workers or --device flag
    (pipeline_app, ["prepare"]),
    (pipeline_app, ["demo"]),
    (world_app, ["render"]),
    (labelgen_app, ["run"]),
    (labelgen_app, ["estimate"]),
    (student_app, ["train"]),
    (student_app, ["predict"]),
    (evaluation_app, ["predict"]),
    (evaluation_app, ["score"]),
    (evaluation_app, ["run"]),
    (evaluation_app, ["crop-analysis"]),
]


def test_workers_and_device_follow_one_rule_everywhere(monkeypatch):
    """A `--workers` left unset is min(4, usable CPUs), `--device` defaults to auto (this rank's
    GPU, else the CPU) in every command that has them."""
    seen = {"--workers": 0, "--device": 0}
    for app, path in SHARED:
        rows = _help_rows(app, path[0], monkeypatch)
        if "--workers" in rows:
            seen["--workers"] += 1
            assert "unset (None): min(4, usable CPUs)" in rows["--workers"], (path, rows)
            assert "[default:" not in rows["--workers"], (path, rows["--workers"])
        if "--device" in rows:
            seen["--device"] += 1
            assert "[default: auto]" in rows["--device"], (path, rows["--device"])
            assert "this rank's GPU (cuda:LOCAL_RANK)" in rows["--device"], (path, rows)
    assert seen == {"--workers": 8, "--device": 9}


def test_bool_flags_keep_their_spellings_and_take_no_value(monkeypatch):
    rows = _help_rows(labelgen_app, "run", monkeypatch)
    assert rows["--claim"].split()[:2] == ["--claim", "Claim"]
    assert rows["--overwrite"].split()[:2] == ["--overwrite", "Replace"]
    assert rows["--progress"].split()[:3] == ["--progress", "/", "--no-progress"]
    assert _help_rows(evaluation_app, "score", monkeypatch)["--figures"].split()[1] == "Write"


def test_resume_refuses_the_setting_flags_by_name(tmp_path):
    args = ["train", "--out", str(tmp_path / "run"), "--resume", "--steps", "5"]
    result = runner.invoke(student_app, [*args, "--batch-size", "2", "--set", "seed=1"])
    assert result.exit_code == 2, result.output
    assert "leave out --batch-size, --set (to change settings" in result.output


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


def test_prepare_negative_workers_are_refused_with_the_fix(photo_folder, tmp_path):
    out = tmp_path / "ds"
    args = ["prepare", "--images", str(photo_folder), "--out", str(out), "--workers", "-1"]
    result = runner.invoke(pipeline_app, args)
    assert result.exit_code == 2 and not out.exists()
    assert result.output.strip() == (
        "error: --workers must be ≥ 0 (0: in this process), got -1; leave it out for "
        "min(4, usable CPUs)"
    )


def test_benchmarks_run_from_the_cli():
    """`pipeline bench NAME ARGS` runs the benchmark module in its own process, flags passed on."""

    def bench(*args: str) -> str:
        command = [sys.executable, "-m", "pipeline.cli", "bench", *args]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    codecs = bench("codecs", "--repeats", "1")
    assert "pcodec-f16" in codecs and "B/px" in codecs
    assert "prepare / decode" in bench("prepare", "--images", "2", "--repeats", "1")
    assert "usage: pipeline bench score" in bench("score", "--help")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "bench", "codecs", "--repeats", "x"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "invalid int value" in done.stderr


def test_every_benchmark_module_is_registered_and_explains_itself(capsys):
    """One convention: each `<stage>/bench/<name>.py` (but shared helpers and the modules of a
    benchmark's modes) is a registered `pipeline bench` command whose `main(argv)` answers
    --help."""
    import importlib

    from pipeline.bench import BENCHMARKS

    root = Path(__file__).resolve().parents[1]
    found = {
        ".".join(path.relative_to(root).with_suffix("").parts)
        for stage in ("pipeline", "labelgen", "student", "evaluation")
        for path in (root / stage / "bench").glob("*.py")
        if path.stem not in ("__init__", "synthetic", "startup")  # startup: labelgen's mode
    }
    assert found == {b.module for b in BENCHMARKS.values()}
    for bench in BENCHMARKS.values():
        with pytest.raises(SystemExit) as done:
            importlib.import_module(bench.module).main(["--help"])
        assert done.value.code == 0
        assert f"usage: pipeline bench {bench.name}" in capsys.readouterr().out
