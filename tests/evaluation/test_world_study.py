"""`pipeline bench world` end to end at its smoke scale: every step runs as the commands a user
runs, the report has a row with numbers for each prior, teacher and configuration, says whether
the teachers clear the bar (the exit status too), and a second run resumes (nothing is trained
again). The cross-architecture pair's DPT start is trained as t2 is and scored beside it."""

from __future__ import annotations

import json
import re

import pytest

from evaluation.bench.world import NO_CONCLUSION, main
from evaluation.study.plan import STUDENTS
from evaluation.study.report import PRIOR_NAMES


@pytest.mark.slow
def test_world_study_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "study"
    # smoke teachers train 2 steps: they cannot beat the prior, and the study says so
    assert main(["--out", str(out), "--scale", "smoke", "--jobs", "2"]) == NO_CONCLUSION
    text = (out / "report" / "study.md").read_text()
    assert "teacher t1 does NOT clear the bar" in text.splitlines()[2]
    names = [*PRIOR_NAMES.values(), "teacher t1", "teacher t2", "start t2-dpt"]
    names += [s.name for s in STUDENTS]
    for name in names:
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert re.search(r"\| 0\.\d{3}( \(±0\.\d{3} SE\))? \| 0\.\d{3} \| 0\.\d{3} \|", row), row
        if name.startswith(("teacher", "base")):
            assert re.search(r"\| \d\.\d\d× / [+-]0\.\d\d \|", row), row  # margin over the ramp
    assert text.count("| teacher t1 |") == 2  # the test split and the second split
    assert "0.075 / 0.270" in text  # the paper's Base row beside ours
    for student in STUDENTS:
        assert (out / "report" / "figures" / f"{student.name}.png").is_file()
    assert (out / "report" / "evaluation.md").read_text().startswith("| Method |")
    # the DPT pair: a DPT start trained as t2 is, students distilled from t1 into it
    log = (out / "commands.log").read_text()
    assert "$ student train --out " + str(out / "runs" / "t2-dpt") in log
    assert (
        json.loads((out / "runs" / "t2-dpt" / "export" / "config.json").read_text())["model_type"]
        == "dpt"
    )
    assert f"--init {out / 'runs' / 't2-dpt' / 'export'}" in log
    trained = (out / "commands.log").read_text().count("$ student train")
    main(["--out", str(out), "--scale", "smoke", "--jobs", "2"])
    assert (out / "commands.log").read_text().count("$ student train") == trained


@pytest.mark.slow
def test_until_teachers_stops_before_labelling(tmp_path):
    out = tmp_path / "study"
    main(["--out", str(out), "--scale", "smoke", "--jobs", "2", "--until", "teachers"])
    assert (out / "runs" / "t1" / "export" / "config.json").is_file()
    assert (out / "eval" / "t1@ood" / "summary.json").is_file()
    assert "labelgen run" not in (out / "commands.log").read_text()
    assert "teacher t1" in (out / "report" / "study.md").read_text()
    assert sorted(p.name for p in (out / "curves" / "t1").iterdir()) == [
        "step_0000001",
        "step_0000002",
    ]  # the learning curve: every checkpoint scored
    # a second study reuses the exported teachers: none is trained again
    again = tmp_path / "again"
    main(["--out", str(again), "--scale", "smoke", "--until", "teachers", "--teachers", str(out)])
    assert "student train" not in (again / "commands.log").read_text()
    assert (again / "eval" / "t1" / "summary.json").is_file()
