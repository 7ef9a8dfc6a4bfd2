"""The README stays true: its settings reference is generated from the code, its quickstart is
the two commands, and the launch scripts it names parse.

Regenerate the reference after changing a setting: `python tests/update_readme.py` (these tests
only read the README).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from update_readme import BLOCK, END, README, START, sections, settings_reference

ROOT = Path(__file__).parents[1]


def test_settings_reference_matches_the_code():
    current = BLOCK.search(README.read_text())
    assert current, f"README.md lacks the {START} ... {END} block"
    assert current.group(0) == settings_reference(), "regenerate: python tests/update_readme.py"


def test_every_setting_is_documented():
    from pipeline.toolkit.settings_doc import settings_rows

    for _, cls in sections():
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
