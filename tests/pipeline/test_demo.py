"""`pipeline demo` runs the whole journey offline and leaves what it says it made."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "dav2: nothing to do" in text and "genpercept: nothing to do" in text
    assert "dpt: labelled 2 shards" in text  # the third teacher alone is computed
    assert "RANDOM models" in text and "Depth-Anything-V2-Large-hf" in text
    for column in ("dav2", "genpercept", "dpt"):
        manifest = json.loads((out / "dataset" / "labels" / column / "manifest.json").read_text())
        assert [e["status"] for e in manifest["shards"].values()] == ["done", "done"]
    for name in ("dav2", "genpercept", "student"):
        summary = json.loads((out / "eval" / name / "summary.json").read_text())
        assert summary["datasets"]["middlebury"]["scored"] == 1
        assert f"| {name} |" in text  # the report table is printed
    metrics = (out / "runs" / "student" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(metrics[-1])["step"] == 24
    from transformers import pipeline

    depth = pipeline("depth-estimation", model=str(out / "student-hf"))
    prediction = depth(Image.open(next((out / "samples").glob("*.jpg"))))
    assert prediction["predicted_depth"].numel() > 0
    # one picture: the photo, the three teachers' labels and the student's prediction
    panel = out / "panel.png"
    assert f"panel: the photo, each teacher's label, the student's prediction: {panel}" in text
    photo = Image.open(out / "samples" / "motorcycle_left.png")
    with Image.open(panel) as image:
        assert image.height > 200 and image.width > 4.5 * image.height * photo.width / photo.height
    assert (out / "preds" / "motorcycle_left.npy").is_file()
    # the suggested next command writes where the demo wrote everything else
    next_line = text.strip().splitlines()[-1]
    assert next_line.startswith("Next:") and next_line.endswith(f"--out {out / 'preds'}")
    assert text.count("s CPU)") >= 10  # every step says what it cost


def test_panel_tiles_the_photo_and_each_map_at_the_photo_size(tmp_path):
    import numpy as np

    from pipeline.demo import PANEL_HEIGHT, write_panel

    photo = np.zeros((50, 100, 3), np.uint8)
    maps = {"a": np.random.default_rng(0).random((20, 40)), "b": np.full((50, 100), np.nan)}
    with Image.open(write_panel(tmp_path / "p.png", photo, maps, gap=4)) as image:
        assert image.size == (3 * 2 * PANEL_HEIGHT + 2 * 4, PANEL_HEIGHT + 18)
        pixels = np.asarray(image.convert("RGB"))
    tile = pixels[18:, 2 * PANEL_HEIGHT + 4 : 4 * PANEL_HEIGHT + 4]
    assert len(np.unique(tile.reshape(-1, 3), axis=0)) > 10  # a coloured map, not blank


def test_demo_steps_run_without_spinning_threads_unless_told(monkeypatch):
    """On a machine shared with other work, PyTorch's OpenMP threads spinning while they wait
    cost several times the CPU time of the demo's computations."""
    import subprocess

    import pipeline.demo as demo

    envs = []

    def run(args, env, **kw):
        envs.append(env)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    demo._run("1/1", ["labelgen", "--help"])
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    demo._run("1/1", ["labelgen", "--help"])
    assert [e["OMP_WAIT_POLICY"] for e in envs] == ["PASSIVE", "ACTIVE"]


def test_demo_rerun_continues_the_student_run_with_resume(tmp_path, monkeypatch):
    """Re-running the demo continues the student run with `student train --resume`, which
    finishes an interrupted run and leaves a finished one alone (tests/student); the demo reads
    no checkpoint name (the commands are recorded, not run)."""
    import pipeline.demo as demo

    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(demo, "_run", lambda step, args: calls.append((step, args)))
    monkeypatch.setattr(demo, "_evaluate", lambda *args: "report")
    monkeypatch.setattr(demo, "_panel", lambda out, *args: out / "panel.png")
    out = tmp_path / "demo"
    run_dir = out / "runs" / "student"

    def training_calls() -> list[list[str]]:
        calls.clear()
        demo.run_demo(out)
        return [args for step, args in calls if args[:2] == ["student", "train"]]

    (first,) = training_calls()
    assert first[:2] == ["student", "train"] and "--resume" not in first
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("{}")  # killed before its final checkpoint
    assert training_calls() == [["student", "train", "--out", str(run_dir), "--resume"]]


def test_demo_numbers_each_step_once_and_says_which_it_skips(tmp_path, monkeypatch, capsys):
    """Every step has its own `[k/n]`; on a second run, the tiny checkpoints already written are
    listed as skipped rather than left out silently. The commands are recorded, not run."""
    import re
    import subprocess

    import pipeline.demo as demo

    def run(args, **kw):
        command = args[3:]  # python -m STAGE.cli ...
        if command[0] == "tiny-checkpoint":
            Path(command[2]).mkdir(parents=True)
        if command[0] == "report":
            Path(command[-1]).parent.mkdir(parents=True, exist_ok=True)
            Path(command[-1]).write_text("| model |\n")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(demo.subprocess, "run", run)
    monkeypatch.setattr(demo, "_panel", lambda out, *args: out / "panel.png")
    out = tmp_path / "demo"
    SKIPPED_CHECKPOINT = r"^\[\d+/\d+\] \$ labelgen tiny-checkpoint .*\(done before, skipped\)$"
    for attempt in range(2):
        demo.run_demo(out)
        text = capsys.readouterr().out
        numbers = re.findall(r"^\[(\d+)/(\d+)\]", text, flags=re.MULTILINE)
        assert [int(k) for k, _ in numbers] == list(range(1, demo.STEPS + 1)), text
        assert {int(n) for _, n in numbers} == {demo.STEPS}
        skipped = re.findall(SKIPPED_CHECKPOINT, text, flags=re.MULTILINE)
        assert len(skipped) == (0 if attempt == 0 else len(demo.TEACHERS)), text
