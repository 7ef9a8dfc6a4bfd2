"""`student export` writes a Hugging Face model card (README.md) that `ModelCard.load` reads:
metadata, the init, the teachers' weight identity, the dataset's image count and plan hash, the
steps trained (continuations included), evaluation results given with --eval, and a note
instead of a failure when the dataset has moved."""

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


def test_card_records_init_teachers_dataset_and_steps(run, train_setup, tmp_path):
    dataset, init = train_setup
    card = export(run, tmp_path / "hf", "--license", "apache-2.0")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "depth-estimation"
    assert {"depth-estimation", "depth-anything", "distill-any-depth"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0"
    assert card.data.to_dict().get("base_model") is None  # a local init is no hub model
    text = card.text
    assert f"`{init}`" in text and "`init_weights: full`" in text
    assert "| `alpha` | alpha | fake | `none` | " in text and f"`{SHA}`" in text
    assert "| `beta` |" in text and "fp32 | 3/3 |" in text  # both columns label all 3 shards
    info = json.loads((dataset / "dataset.json").read_text())
    assert f"- Images: {info['num_samples']} in 3 shards" in text
    assert f"`{info['plan_hash']}`" in text
    assert "- Steps trained: 2 (checkpoint `step_0000002.pt`" in text
    assert "Not evaluated" in text
    settings = text.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(settings)["steps"] == 2


def test_card_shows_evaluation_results_given_with_eval(run, tmp_path):
    scored = tmp_path / "eval-nyu"
    scored.mkdir()
    entry = {"abs_rel": 0.1234, "delta1": 0.9, "delta2": 0.97, "delta3": 0.99, "rmse": 0.41}
    entry |= {"samples": 4, "scored": 4, "protocol": {"alignment": "least squares in disparity"}}
    summary = {"schema": 1, "model": {"name": "dad-tiny", "spec": str(run)}, "datasets": {}}
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
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["dataset"] = str(tmp_path / "gone")
    (moved / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    text = export(moved, tmp_path / "hf").text
    assert f"The dataset directory `{tmp_path / 'gone'}` did not exist" in text
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
