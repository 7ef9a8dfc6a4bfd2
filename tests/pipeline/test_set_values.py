"""Values of `--set KEY=VALUE` and settings files that YAML cannot read are one line naming the
argument or the file, the line and column and the problem, exit 2, in every command that takes
them; and YAML's exponent floats (`1e-4`) are floats wherever a setting holds them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from labelgen.cli import app as labelgen_app
from pipeline.toolkit.config import load_config, parse_override
from student.cli import app as student_app

runner = CliRunner()


@dataclass
class Settings:
    """Settings of the tests."""

    lr: float = 5e-5
    weights: list[float] = field(default_factory=list)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("weights=[0.5,", "line 1, column 6: expected the node content"),
        ("weights=[0.5", "line 1, column 5: expected ',' or ']'"),
        ('lr="1e-4', "line 1, column 6: found unexpected end of stream"),
        ("lr=@1", "line 1, column 1: found character '@' that cannot start any token"),
        ("lr=!!python/object/apply:os.system [ls]", "line 1, column 1: could not determine"),
    ],
)
def test_a_value_yaml_cannot_read_is_one_line_naming_the_argument(text, where):
    with pytest.raises(ValueError) as info:
        load_config(Settings, None, [text])
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"--set {text!r}: not valid YAML ({where}"), message
    assert "write the value as YAML" in message


@pytest.mark.parametrize("text", ["=3", " =3", "lr"])
def test_an_argument_without_a_key_is_refused(text):
    with pytest.raises(ValueError, match=r"expected KEY=VALUE"):
        parse_override(text)


def test_a_settings_file_yaml_cannot_read_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lr: 1.0\nweights: [0.5,\n")
    with pytest.raises(ValueError) as info:
        load_config(Settings, path)
    assert str(info.value) == (
        f"{path}: not valid YAML (line 3, column 1: expected the node content, but found "
        "'<stream end>'); fix the file"
    )


def test_exponent_floats_are_floats_in_lists_and_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\nweights: [1e-4, 2E3, 0.5]\n")
    assert load_config(Settings, path) == Settings(lr=1e-4, weights=[1e-4, 2e3, 0.5])
    given = load_config(Settings, None, ["weights=[1e-4, 1]", "lr=3.0e4"])
    assert given == Settings(lr=3e4, weights=[1e-4, 1.0])
    assert parse_override("name=1e-4x") == ("name", "1e-4x")  # text stays text


def one_error_line(result) -> str:
    """The command exited 2 with exactly one line, `error: ...`; that line."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_student_train_reports_a_bad_set_value_or_config_in_one_line(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--dataset", str(tmp_path), "--teacher", "a"]
    result = runner.invoke(student_app, [*args, "--set", "data.teacher_weights=[0.5,"])
    line = one_error_line(result)
    assert line.startswith("error: --set 'data.teacher_weights=[0.5,': not valid YAML (line 1, ")
    config = tmp_path / "bad.yaml"
    config.write_text("data:\n  teacher_weights: [0.5,\n")
    line = one_error_line(runner.invoke(student_app, [*args, "--config", str(config)]))
    assert line.startswith(f"error: {config}: not valid YAML (line 3, column 1: ")
    assert not out.exists()


def test_labelgen_run_reports_a_bad_teachers_file_in_one_line(tmp_path):
    """`labelgen run` takes no --set; its YAML input is the teachers file."""
    teachers = tmp_path / "teachers.yaml"
    teachers.write_text("- name: a\n  adapter: [dpt,\n")
    args = ["run", "--dataset", str(tmp_path), "--teachers-file", str(teachers), "--workers", "0"]
    line = one_error_line(runner.invoke(labelgen_app, args))
    assert line.startswith(f"error: {teachers}: cannot read teacher list: not valid YAML (line 3")
