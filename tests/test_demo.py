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
