"""Error messages print paths as paths and no Python object reprs (`PosixPath('...')`,
`<_io.BytesIO object at 0x...>`): through the commands a user runs with bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pipeline.toolkit.messages import plain

REPRS = ("PosixPath(", "WindowsPath(", "object at 0x")


def _error(app, args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    return result.output


def _assert_plain(message: str) -> None:
    assert "error: " in message and not any(r in message for r in REPRS), message


def test_plain_drops_object_reprs_and_writes_paths_plainly():
    message = "cannot identify image file <_io.BytesIO object at 0x7f1c2b3a>; at PosixPath('a/b')"
    assert plain(ValueError(message)) == "cannot identify image file; at a/b"


def test_a_directory_that_is_no_student_is_named_plainly(tmp_path):
    from student.cli import app

    model = tmp_path / "bert"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "a.png").write_bytes(b"")
    message = _error(app, ["predict", str(model), str(tmp_path / "a.png"), "--out", "o"])
    _assert_plain(message)
    assert f"{model}: a 'bert' model is no student family" in message


def test_an_undecodable_benchmark_image_is_named_without_a_buffer_repr(tmp_path):
    from evaluation.cli import app
    from pipeline.world.files import WorldSettings, render_world

    world = tmp_path / "world"
    render_world(world, 1, WorldSettings(split="test", height=40, width=60), 1, progress=False)
    (world / "000000.png").write_bytes(b"not a png")
    message = _error(app, ["check-data", f"world={world}"])
    _assert_plain(message)
    assert "000000.png: cannot decode (cannot identify image file)" in message
