"""`student export` writes a Hugging Face model card (README.md) that `ModelCard.load` reads:
metadata, the init, the teachers' weight identity (from the run's inputs.json, or for older runs
the columns' manifests), the dataset's image count and plan hash, the steps trained
(continuations included), the precision and warm-up that ran, evaluation results given with
--eval (only of this model), a note instead of a failure when the dataset has moved, and no
absolute local path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from train_helpers import runner, train

from student.card import card_metadata, model_card
from student.cli import app

SHA = "0" * 64
"""The weights sha256 the fake teacher columns record (tests/dataset_helpers.py)."""


@pytest.fixture(scope="module")
def run(train_setup, tmp_path_factory) -> Path:
    """A 2-step run of the teachers alpha and beta."""
    dataset, init = train_setup
    root = tmp_path_factory.mktemp("card") / "run"
    train(root, dataset, init, "--steps", "2", "--batch-size", "1")
    return root


def export(run_dir: Path, out: Path, *extra: str) -> ModelCard:
    result = runner.invoke(app, ["export", str(run_dir), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return ModelCard.load(out / "README.md")


def older_run(run: Path, where: Path) -> Path:
    """A copy of `run` without inputs.json, as runs were before they recorded it."""
    copy = where / "older" / "run"
    shutil.copytree(run, copy)
    (copy / "inputs.json").unlink(missing_ok=True)
    return copy


def no_local_paths(text: str, *paths: Path) -> bool:
    """True when none of `paths` (nor their resolved forms) appears in `text`."""
    return not [p for p in paths for form in {str(p), str(p.resolve())} if form in text]


def test_card_records_init_teachers_dataset_and_steps(run, train_setup, tmp_path):
    dataset, init = train_setup
    card = export(older_run(run, tmp_path), tmp_path / "hf", "--license", "apache-2.0")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "depth-estimation"
    assert {"depth-estimation", "depth-anything", "distill-any-depth"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0"
    assert card.data.to_dict().get("base_model") is None  # a local init is no hub model
    text = card.text
    assert f"`{init.name} (local)`" in text and "`init_weights: full`" in text
    assert "| `alpha` | alpha | fake | `none` | " in text and f"`{SHA}`" in text
    assert "| `beta` |" in text and "fp32 | 3/3 |" in text  # both columns label all 3 shards
    info = json.loads((dataset / "dataset.json").read_text())
    assert f"- Images: {info['num_samples']} in 3 shards" in text
    assert f"`{info['plan_hash']}`" in text and f"- Directory: `{dataset.name}`" in text
    assert "- Steps trained: 2 (checkpoint `step_0000002.pt`" in text
    assert no_local_paths(text, init, dataset, run.parent, tmp_path)
    assert "Not evaluated" in text
    settings = text.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(settings)["steps"] == 2


def test_card_shows_evaluation_results_given_with_eval(run, tmp_path):
    scored = tmp_path / "eval-nyu"
    scored.mkdir()
    entry = {"abs_rel": 0.1234, "delta1": 0.9, "delta2": 0.97, "delta3": 0.99, "rmse": 0.41}
    entry |= {"samples": 4, "scored": 4, "protocol": {"alignment": "least squares in disparity"}}
    model = {"name": "dad-tiny", "spec": str(run), "kind": "student"}
    model["checkpoint"] = str(run / "checkpoints" / "step_0000002.pt")
    summary = {"schema": 1, "model": model, "datasets": {}}
    summary["datasets"]["nyu"] = entry
    (scored / "summary.json").write_text(json.dumps(summary))
    card = export(run, tmp_path / "hf", "--eval", str(scored))
    assert "| dad-tiny | nyu | 4 | 0.1234 | 0.9000 | 0.9700 | 0.9900 | 0.4100 |" in card.text
    assert "least squares in disparity" in card.text
    assert "| model | dataset | samples | abs_rel | delta1 |" in card.text  # no labels recorded
    summary["metrics"] = {"abs_rel": {"label": "AbsRel↓"}, "rmse": {"label": "RMSE↓"}}
    (scored / "summary.json").write_text(json.dumps(summary))
    card = export(run, tmp_path / "hf2", "--eval", str(scored))
    assert (
        "| model | dataset | samples | AbsRel↓ | delta1 |" in card.text and "RMSE↓ |" in card.text
    )
    missing = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "x"), "--eval", "no"])
    assert missing.exit_code == 2 and "no summary.json" in missing.output
    assert not (tmp_path / "x").exists()  # checked before anything is written


def test_a_moved_dataset_is_noted_not_fatal(run, tmp_path):
    moved = older_run(run, tmp_path)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["dataset"] = str(tmp_path / "gone")
    (moved / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    text = export(moved, tmp_path / "hf").text
    assert "The dataset directory `gone` did not exist" in text
    assert "`alpha`, `beta`" in text and "- Steps trained: 2" in text


def test_a_continued_run_says_from_where(run, train_setup, tmp_path):
    longer = tmp_path / "run"
    shutil.copytree(run, longer)
    resumed = runner.invoke(app, ["train", "--out", str(longer), "--resume", "--steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    text = model_card(longer, 3)
    assert "- Steps trained: 3 (checkpoint `step_0000003.pt`; the run's total: 3)" in text
    assert "- Continued at step 2 to 3 steps in all" in text and "First total 2 steps" in text


def test_a_hub_init_is_the_base_model():
    meta = card_metadata("depth-anything/Depth-Anything-V2-Small-hf", "hf")
    assert meta["base_model"] == "depth-anything/Depth-Anything-V2-Small-hf"
    assert "license" not in meta  # not known: the init's license is not guessed
    assert card_metadata("/models/local-init", "onnx")["library_name"] == "onnx"
    assert "base_model" not in card_metadata("/models/local-init", "onnx")


def test_card_lists_the_columns_the_run_recorded_in_inputs_json(run, train_setup, tmp_path):
    dataset, _ = train_setup
    recorded = older_run(run, tmp_path)
    local = tmp_path / "weights" / "dav2-large"
    inputs = {"dataset": str(dataset), "plan_sha256": "c" * 64, "images": {"000000": "d" * 64}}
    inputs["columns"] = {
        "alpha": {"weights_sha256": "ab" * 32, "weights_source": str(local), "input_rule": {}},
        "beta": {
            "weights_sha256": "12" * 32,
            "weights_source": "depth-anything/Depth-Anything-V2-Small-hf",
            "input_rule": {},
            "teacher": "depth-anything-v2",
        },
    }
    (recorded / "inputs.json").write_text(json.dumps(inputs))
    text = export(recorded, tmp_path / "hf").text
    assert f"| `alpha` | ? | `dav2-large (local)` | `{'ab' * 6}` |" in text
    hub = "depth-anything/Depth-Anything-V2-Small-hf"
    beta = f"| `beta` | depth-anything-v2 | `{hub}` | `121212121212` |"
    assert beta in text
    assert "ab" * 7 not in text  # 12 hex digits, not the whole sha256
    assert f"`{'c' * 64}`" in text  # the plan hash the run recorded
    assert no_local_paths(text, local, dataset, tmp_path)


CPU_FP32 = "; fp32 (on a CPU; `precision: bf16` applies on a GPU)"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"cuda": None}, CPU_FP32),  # a torch without CUDA: the CPU
        ({"cuda": "12.4", "device": "cpu"}, CPU_FP32),
        ({"cuda": "12.4", "device": "cuda"}, "; bf16 autocast (GPU)"),
        ({"cuda": "12.4"}, "; bf16 autocast on a GPU, fp32 on a CPU (the run did not record"),
    ],
)
def test_card_states_the_precision_and_warm_up_that_ran(run, tmp_path, env, says):
    """CPU training runs fp32 whatever `precision` says; a 2-step run warms up for 1 step, not
    the 500 of `warmup_steps` (the schedule caps it at a tenth of the run)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    recorded = json.loads((copy / "env.json").read_text())
    recorded.pop("device", None)
    (copy / "env.json").write_text(json.dumps(recorded | env))
    text = model_card(copy, 2)
    assert says in text
    assert "linear warm-up 1 step (`warmup_steps: 500`, capped at a tenth" in text
    assert "warm-up 500" not in text


def test_a_run_records_its_device_and_its_card_says_what_ran_there(run):
    from pipeline.toolkit.devices import resolve_device

    device = resolve_device("auto").type  # what the run trained on (no --device given)
    assert json.loads((run / "env.json").read_text())["device"] == device
    assert (CPU_FP32 if device == "cpu" else "; bf16 autocast (GPU)") in model_card(run, 2)


def test_eval_of_another_model_or_step_is_refused(run, tmp_path):
    scored = tmp_path / "eval"
    scored.mkdir()
    entry = {"abs_rel": 0.2, "delta1": 0.8, "samples": 2}
    other = {"name": "dav2-small", "spec": "depth-anything/Depth-Anything-V2-Small-hf"}
    summaries = {
        "teacher": other | {"kind": "hf"},
        "other run": {"name": "x", "spec": str(tmp_path / "x"), "kind": "student"},
        "other step": {
            "name": "run",
            "spec": str(run),
            "kind": "student",
            "checkpoint": str(run / "checkpoints" / "step_0000001.pt"),
        },
    }
    for what, model in summaries.items():
        (scored / "summary.json").write_text(
            json.dumps({"model": model, "datasets": {"nyu": entry}})
        )
        out = tmp_path / what.replace(" ", "-")
        result = runner.invoke(app, ["export", str(run), "--out", str(out), "--eval", str(scored)])
        assert result.exit_code == 2, (what, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and f"--eval {scored} scored {model['name']}" in lines[0], what
        assert "not this export (run at step 2)" in lines[0], what
        assert not out.exists()


def test_eval_of_an_export_of_this_checkpoint_is_accepted(run, tmp_path):
    exported = tmp_path / "exported"
    export(run, exported)
    scored = tmp_path / "eval"
    scored.mkdir()
    model = {"name": "exported", "spec": str(exported), "kind": "hf"}
    entry = {"abs_rel": 0.25, "delta1": 0.75, "samples": 3, "scored": 3}
    (scored / "summary.json").write_text(json.dumps({"model": model, "datasets": {"kitti": entry}}))
    card = export(run, tmp_path / "onnx-or-hf", "--eval", str(scored))
    assert "| exported | kitti | 3 | 0.2500 | 0.7500 |" in card.text
