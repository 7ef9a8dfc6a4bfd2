"""`RUN/inputs.json` records what a run trains on; `--resume` refuses a change of it (a column
relabelled with other weights, another plan, other images) and follows a moved dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from train_helpers import read_metrics, runner, train

from pipeline.dataset import load_dataset
from student.cli import app
from student.inputs import changes, run_inputs


def _copy(dataset: Path, to: Path) -> Path:
    """A copy of the shared dataset this test may change."""
    shutil.copytree(dataset, to)
    return to


def _edit_manifest(dataset: Path, column: str, **header) -> None:
    """Change header fields of a column's manifest, as a relabelling with other settings does."""
    path = dataset / "labels" / column / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in header.items():
        top, _, sub = key.partition(".")
        if sub:
            manifest[top][sub] = value
        else:
            manifest[top] = value
    path.write_text(json.dumps(manifest))


def _resume(run: Path, *extra: str):
    return runner.invoke(app, ["train", "--out", str(run), "--resume", *extra])


def test_a_run_records_the_identity_of_every_input(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "1", "--batch-size", "1")
    inputs = json.loads((run / "inputs.json").read_text())
    info = load_dataset(dataset)
    assert inputs["dataset"] == str(dataset.resolve())
    assert inputs["plan_sha256"] == info.plan_hash
    assert inputs["images"] == {s.name: s.image_sha256 for s in info.shards}
    assert set(inputs["columns"]) == {"alpha", "beta"}
    for name, backend in [("alpha", "wds"), ("beta", "zarr")]:
        column = inputs["columns"][name]
        assert column["weights_sha256"] == "0" * 64 and column["weights_source"] == "none"
        assert column["input_rule"] == {} and column["plan_sha256"] == info.plan_hash
        assert column["output_kind"] == "disparity" and column["backend"] == backend


def test_resume_refuses_a_column_relabelled_with_other_weights(train_setup, tmp_path):
    dataset, init = train_setup
    dataset = _copy(dataset, tmp_path / "ds")
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "1", "--batch-size", "1")
    _edit_manifest(dataset, "alpha", **{"weights.sha256": "1" * 64, "weights.source": "other"})
    refused = _resume(run, "--steps", "2")
    assert refused.exit_code == 2, refused.output
    line = refused.output.strip()
    assert line.startswith("error: ") and "\n" not in line, line
    assert "label column 'alpha' (weights_sha256 000000000000 → 111111111111)" in line, line
    assert "relabel it back" in line and "another --out" in line, line
    assert [m["step"] for m in read_metrics(run)] == [1]  # not trained on
    # the weights moved to another path, same bytes: the run resumes
    _edit_manifest(dataset, "alpha", **{"weights.sha256": "0" * 64})
    assert _resume(run, "--steps", "2").exit_code == 0


def test_resume_follows_a_moved_dataset_that_holds_the_same_inputs(train_setup, tmp_path):
    dataset, init = train_setup
    first = _copy(dataset, tmp_path / "first")
    run = tmp_path / "run"
    train(run, first, init, "--steps", "1", "--batch-size", "1")
    moved = tmp_path / "moved"
    first.rename(moved)
    gone = _resume(run, "--steps", "2")
    assert gone.exit_code == 2 and "moved or is gone" in gone.output, gone.output
    assert "--resume --dataset NEW" in gone.output

    other = _copy(moved, tmp_path / "other")  # the same images and plan, beta labelled otherwise
    _edit_manifest(other, "beta", input_rule={"short_side": 518})
    refused = _resume(run, "--steps", "2", "--dataset", str(other))
    assert refused.exit_code == 2, refused.output
    assert f"--dataset {other} does not hold the inputs" in refused.output
    assert "label column 'beta' (input_rule" in refused.output

    done = _resume(run, "--steps", "2", "--dataset", str(moved))
    assert done.exit_code == 0, done.output
    assert yaml.safe_load((run / "config.yaml").read_text())["dataset"] == str(moved)
    assert json.loads((run / "inputs.json").read_text())["dataset"] == str(moved)
    assert [m["step"] for m in read_metrics(run)] == [1, 2]
    done = _resume(run, "--steps", "3")  # from then on the run reads the new place
    assert done.exit_code == 0, done.output


def test_changes_name_the_plan_and_the_image_shards(train_setup):
    dataset, _ = train_setup
    recorded = run_inputs(dataset, ["alpha"])
    assert changes(recorded, run_inputs(dataset, ["alpha"])) == []
    current = json.loads(json.dumps(recorded))
    current["plan_sha256"] = "2" * 64
    current["images"]["000001"] = "3" * 64
    del current["images"]["000002"]
    current["dataset"] = "/elsewhere"  # the place is not an identity
    said = changes(recorded, current)
    assert said[0].startswith("the crop plan (plan_sha256 ") and "→ 222222222222" in said[0]
    assert said[1].startswith("the image shards (shard 000001 ")
    assert "shard 000002 missing" in said[1]


def test_a_run_from_before_inputs_were_recorded_resumes_and_records_them(train_setup, tmp_path):
    """A run directory of an older version (no inputs.json, no checkpoint settings in its
    config.yaml) resumes, and its first resume records its inputs."""
    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "1", "--batch-size", "1")
    recorded = json.loads((run / "inputs.json").read_text())
    (run / "inputs.json").unlink()
    config = yaml.safe_load((run / "config.yaml").read_text())
    del config["settings"]["checkpoint"]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    moved = _resume(run, "--steps", "2", "--dataset", str(_copy(dataset, tmp_path / "ds")))
    assert moved.exit_code == 2 and "cannot be checked" in moved.output, moved.output
    done = _resume(run, "--steps", "2")
    assert done.exit_code == 0, done.output
    assert json.loads((run / "inputs.json").read_text()) == recorded
