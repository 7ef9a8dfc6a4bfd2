"""Options derived from a settings dataclass: flag names, types, defaults and help text come from
the fields, bool fields keep their switch spellings, a command takes a subset or renames a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.toolkit.cliutil import user_errors
from pipeline.toolkit.options import SettingsOptions, command_app, settings_command


@dataclass(frozen=True)
class Toy:
    batch_size: int = 16
    """Images per batch [halved on out-of-memory]."""
    ratio: float = 0.5
    """A fraction."""
    name: str | None = None
    """A name; unset = the model's."""
    claim: bool = False
    """Claim work with lock files."""
    progress: bool = True
    """Show a progress bar."""
    root: Path = Path("out")
    """Where to write."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be ≥ 1, got {self.batch_size}")


def _app(group: SettingsOptions, seen: list) -> typer.Typer:
    app = command_app(help="A toy command line.")

    @app.command()
    @user_errors
    @settings_command
    def run(
        dataset: str = typer.Option(..., help="Not a setting."),
        settings: Any = group,
        verbose: bool = typer.Option(False, "--verbose", help="Also not a setting."),
    ) -> None:
        seen.append((dataset, settings, verbose))

    app.command("other")(lambda: None)  # two commands, so `run` is a subcommand
    return app


def _invoke(group: SettingsOptions, *args: str):
    seen: list = []
    result = CliRunner().invoke(_app(group, seen), ["run", "--dataset", "d", *args])
    return result, (seen[0] if seen else None)


def _params(group: SettingsOptions) -> dict:
    command = get_command(_app(group, [])).commands["run"]
    return {p.name: p for p in command.params}


def test_every_field_becomes_a_typed_option_with_its_default_and_docstring():
    params = _params(SettingsOptions(Toy))
    assert list(params) == [
        *["dataset", "batch_size", "ratio", "name", "claim", "progress", "root", "verbose"]
    ]
    assert params["batch_size"].opts == ["--batch-size"] and params["batch_size"].default == 16
    assert params["ratio"].help == "A fraction." and params["ratio"].default == 0.5
    assert params["name"].default is None and params["root"].default == Path("out")
    not_an_int, seen = _invoke(SettingsOptions(Toy), "--batch-size", "2.5")
    assert not_an_int.exit_code == 2 and seen is None and "--batch-size" in not_an_int.output


def test_the_command_gets_the_settings_object():
    result, (dataset, settings, verbose) = _invoke(
        SettingsOptions(Toy), "--batch-size", "4", "--ratio", "0.25", "--name", "x", "--verbose"
    )
    assert result.exit_code == 0, result.output
    assert settings == Toy(batch_size=4, ratio=0.25, name="x") and dataset == "d" and verbose
    assert isinstance(settings.ratio, float) and isinstance(settings.batch_size, int)
    _, (_, defaults, _) = _invoke(SettingsOptions(Toy))
    assert defaults == Toy()


def test_bool_fields_keep_their_switch_spellings():
    params = _params(SettingsOptions(Toy))
    assert params["claim"].opts == ["--claim"] and not params["claim"].secondary_opts
    assert params["progress"].opts == ["--progress"]
    assert params["progress"].secondary_opts == ["--no-progress"]
    _, (_, settings, _) = _invoke(SettingsOptions(Toy), "--claim", "--no-progress")
    assert settings.claim is True and settings.progress is False
    refused, _ = _invoke(SettingsOptions(Toy), "--no-claim")
    assert refused.exit_code == 2 and "No such option" in refused.output


def test_help_explains_each_option_and_shows_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    app = _app(SettingsOptions(Toy), [])
    text = " ".join(CliRunner().invoke(app, ["run", "--help"]).output.split())
    for doc in ("Images per batch [halved on out-of-memory].", "A fraction.", "Where to write."):
        assert doc in text
    assert "[default: 16]" in text and "[default: 0.5]" in text and "[default: out]" in text


def test_a_subset_keeps_the_other_defaults_and_flags_can_be_renamed():
    group = SettingsOptions(Toy, fields=("batch_size", "claim"), flags={"claim": "--lock"})
    assert set(_params(group)) == {"dataset", "batch_size", "claim", "verbose"}
    assert group.flag("claim") == "--lock" and group.flag("batch_size") == "--batch-size"
    result, (_, settings, _) = _invoke(group, "--lock", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert settings == Toy(batch_size=2, claim=True)
    missing, _ = _invoke(group, "--ratio", "0.1")
    assert missing.exit_code == 2 and "No such option" in missing.output


def test_a_command_gives_fields_its_own_defaults_shown_and_kept():
    group = SettingsOptions(Toy, fields=("ratio",), defaults={"ratio": 0.75, "batch_size": 8})
    assert _params(group)["ratio"].default == 0.75
    _, (_, settings, _) = _invoke(group)
    assert settings == Toy(batch_size=8, ratio=0.75)  # a default of a field not exposed, too
    _, (_, given, _) = _invoke(group, "--ratio", "0.1")
    assert given == Toy(batch_size=8, ratio=0.1)
    with pytest.raises(TypeError, match="no field speed"):
        SettingsOptions(Toy, defaults={"speed": 1})


def test_a_settings_check_that_fails_is_a_one_line_user_error():
    result, seen = _invoke(SettingsOptions(Toy), "--batch-size", "0")
    assert seen is None and result.exit_code == 2
    assert result.output.strip() == "error: --batch-size must be ≥ 1, got 0"


def test_overrides_give_only_the_fields_on_the_command_line():
    group = SettingsOptions(Toy, fields=("batch_size", "progress"), overrides=True)
    params = _params(group)
    assert params["batch_size"].default is None and params["batch_size"].show_default == "16"
    assert params["batch_size"].help.endswith("Overrides --config and --set.")
    assert params["progress"].secondary_opts == ["--no-progress"]
    _, (_, nothing, _) = _invoke(group)
    assert nothing == {}
    _, (_, given, _) = _invoke(group, "--batch-size", "3", "--no-progress")
    assert given == {"batch_size": 3, "progress": False}


@dataclass
class Undocumented:
    steps: int = 1
    teachers: list[str] = field(default_factory=list)
    """A list: set in a file, not a flag."""


def test_declaration_errors_are_caught_when_the_command_is_defined():
    with pytest.raises(TypeError, match="no docstring under steps"):
        SettingsOptions(Undocumented, fields=("steps",))
    with pytest.raises(TypeError, match="Undocumented.teachers.*--set"):
        SettingsOptions(Undocumented, fields=("teachers",))
    with pytest.raises(TypeError, match="Toy has no field epochs"):
        SettingsOptions(Toy, fields=("epochs",))

    def clash(batch_size: int = 1, settings: Toy = SettingsOptions(Toy)) -> None: ...

    with pytest.raises(TypeError, match="batch_size declared twice"):
        settings_command(clash)
