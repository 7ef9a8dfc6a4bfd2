"""`pipeline demo` runs the whole journey offline and leaves what it says it made."""

from __future__ import annotations

import json

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


def test_demo_rerun_resumes_an_interrupted_training(tmp_path, monkeypatch):
    """Re-running the demo after an interruption continues the student run instead of failing
    on a run directory without its final checkpoint (the commands are recorded, not run)."""
    import pipeline.demo as demo

    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(demo, "_run", lambda step, args: calls.append((step, args)))
    monkeypatch.setattr(demo, "_evaluate", lambda *args: "report")
    out = tmp_path / "demo"
    run_dir = out / "runs" / "student"

    def training_calls() -> list[list[str]]:
        calls.clear()
        demo.run_demo(out)
        return [args for step, args in calls if step == "5/8"]

    (first,) = training_calls()
    assert first[:2] == ["student", "train"] and "--resume" not in first
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("{}")  # killed before its final checkpoint
    assert training_calls() == [["student", "train", "--out", str(run_dir), "--resume"]]
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "step_0000024.pt").write_bytes(b"")
    assert training_calls() == []
