"""The README stays true: its settings reference is generated from the code, its quickstart is
the two commands, and the launch scripts it names parse.

Regenerate the reference after changing a setting: `UPDATE_README=1 python -m pytest
tests/test_readme.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evaluation.predict import PredictSettings
from evaluation.score import ScoreSettings
from labelgen.settings import RunSettings
from pipeline.dataset.prepare import PrepareSettings
from pipeline.toolkit.settings_doc import settings_markdown
from student.config import TrainSettings

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
START, END = "<!-- settings-reference:start -->", "<!-- settings-reference:end -->"
SECTIONS = [
    (
        "`student train` (`--config FILE`, `--set key=value`, `--steps`, `--batch-size`)",
        TrainSettings,
    ),
    ("`labelgen run` / `estimate` (flags)", RunSettings),
    ("`pipeline prepare` (flags)", PrepareSettings),
    ("`evaluation predict` / `run` (flags)", PredictSettings),
    ("`evaluation score` / `run` (flags)", ScoreSettings),
]


def settings_reference() -> str:
    parts = [f"### {title}\n\n{settings_markdown(cls)}" for title, cls in SECTIONS]
    return "\n\n".join(parts)


def test_settings_reference_matches_the_code():
    text = README.read_text()
    expected = f"{START}\n{settings_reference()}\n{END}"
    current = re.search(re.escape(START) + r".*?" + re.escape(END), text, re.S)
    assert current, f"README.md lacks the {START} ... {END} block"
    if os.environ.get("UPDATE_README"):
        README.write_text(text.replace(current.group(0), expected))
        return
    assert current.group(0) == expected, "regenerate: UPDATE_README=1 pytest tests/test_readme.py"


def test_every_setting_is_documented():
    from pipeline.toolkit.settings_doc import settings_rows

    for _, cls in SECTIONS:
        undocumented = [key for key, _, doc in settings_rows(cls) if not doc]
        assert not undocumented, f"{cls.__name__}: no docstring under {undocumented}"


def _pytest_args(line: str) -> list[str]:
    """The arguments after `-m pytest`, without the quiet flag (CI's output choice)."""
    return [a for a in line.split("-m pytest", 1)[1].split() if a != "-q"]


def test_quickstart_is_the_two_commands_ci_runs():
    """Two commands: one installs and runs the demo, the other is the test command, and CI
    (`.ci/run`) installs the same way and runs the same tests."""
    text = README.read_text()
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    install, test = block.strip().splitlines()
    assert "pip install" in install and install.endswith("&& pipeline demo")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_install = next(line for line in ci if "pip install" in line)
    pip_args = install.split("pip install", 1)[1].split("&&")[0].split()
    assert all(arg in ci_install.split() for arg in pip_args), (install, ci_install)
    ci_test = next(line for line in ci if "-m pytest" in line)
    assert _pytest_args(test) == _pytest_args(ci_test), (test, ci_test)


def test_every_config_and_script_the_readme_names_exists():
    text = README.read_text()
    for path in set(re.findall(r"(?:configs|docker)/[\w./-]+\.(?:yaml|sbatch|sh)\b", text)):
        assert (ROOT / path).is_file(), f"README names {path}, which does not exist"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", sorted((ROOT / "docker").glob("*.s*")), ids=lambda p: p.name)
def test_launch_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
