"""`pipeline bench world` end to end at its smoke scale: every step runs as the commands a user
runs, the report has a row with numbers for each teacher and configuration, and a second run
resumes (nothing is trained again)."""

from __future__ import annotations

import re

import pytest

from pipeline.bench.world import STUDENTS, main


@pytest.mark.slow
def test_world_study_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "study"
    report = main(["--out", str(out), "--scale", "smoke", "--jobs", "2"])
    text = report.read_text()
    for name in ["teacher t1", "teacher t2", *(s.name for s in STUDENTS)]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert re.search(r"\| 0\.\d{3} \| 0\.\d{3} \| 0\.\d{3} \|", row), row
    assert "0.075 / 0.270" in text  # the paper's Base row beside ours
    for student in STUDENTS:
        assert (out / "report" / "figures" / f"{student.name}.png").is_file()
    assert (out / "report" / "evaluation.md").read_text().startswith("| Method |")
    trained = (out / "commands.log").read_text().count("$ student train")
    main(["--out", str(out), "--scale", "smoke", "--jobs", "2"])
    assert (out / "commands.log").read_text().count("$ student train") == trained
