"""The world's test split as a benchmark: `--dataset world=DIR` (directory or tar), its protocol
rules, and `evaluation score` / `run` on a tiny rendered split."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation.cli import app
from evaluation.datasets import DatasetError, check_data, check_sample, open_dataset
from evaluation.protocol import DATASETS, scoring_mask
from labelgen.teachers import write_tiny_checkpoint
from pipeline.world.files import WorldSettings, render_world

runner = CliRunner()
KEYS = ["000000", "000001", "000002"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "test"
    render_world(out, 3, WorldSettings(seed=0, split="test", height=42, width=56), 1, False)
    return out


def _invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_loader_reads_rgb_exact_depth_and_mask(world):
    ds = open_dataset(f"world={world}")
    assert ds.keys() == KEYS and len(ds) == 3
    sample = ds.load("000001")
    check_sample(ds, "000001", sample)
    assert sample.valid_mask is not None and sample.valid_mask.any()
    np.testing.assert_array_equal(sample.depth, np.load(world / "000001.depth.npy"))
    assert (sample.depth[~sample.valid_mask] == 0).all()
    assert ds.load("000001", rgb=False).rgb is None
    np.testing.assert_array_equal(ds.load_rgb("000001"), sample.rgb)
    desc = json.loads(json.dumps(ds.describe()))
    assert desc["count"] == desc["expected_count"] == 3 and desc["world"]["split"] == "test"
    with pytest.raises(DatasetError, match="not a sample"):
        ds.load("000009")


def test_protocol_scores_valid_pixels_up_to_80_m(world):
    rules = DATASETS.get("world")
    assert rules.max_depth == 80.0  # as KITTI: the far ground is left out
    sample = open_dataset(f"world={world}").load("000000")
    mask = scoring_mask(sample.depth, rules, sample.valid_mask)
    np.testing.assert_array_equal(mask, sample.valid_mask & (sample.depth < 80.0))
    assert (sample.valid_mask & (sample.depth >= 80.0)).any()  # some valid ground is further
    assert check_data(f"world={world}", full=True)["empty_gt"] == 0


def test_a_tar_of_the_split_reads_the_same(world, tmp_path):
    tar = tmp_path / "world_test.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(world, arcname="world_test")
    ds = open_dataset(f"world={tar}")
    assert ds.keys() == KEYS and ds.describe()["prefix"] == "world_test/"
    np.testing.assert_array_equal(
        ds.load("000002").depth, open_dataset(f"world={world}").load("000002").depth
    )


def test_incomplete_or_foreign_folders_are_refused(world, tmp_path):
    with pytest.raises(DatasetError, match="world.json"):
        open_dataset(f"world={tmp_path}")  # empty of world files
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in world.iterdir():
        if p.name != "000001.mask.npy":
            (broken / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DatasetError, match="000001.png"):
        open_dataset(f"world={broken}")


def test_score_of_an_exact_prediction_is_perfect_and_of_a_flat_one_is_not(world, tmp_path):
    for name, fn in (("exact", lambda d: 2.0 * d + 1.0), ("flat", lambda d: np.ones_like(d))):
        folder = tmp_path / name / "predictions" / "world"
        folder.mkdir(parents=True)
        for key in KEYS:
            np.save(folder / f"{key}.npy", fn(np.load(world / f"{key}.depth.npy")))
        _invoke(
            "score", tmp_path / name, "--dataset", f"world={world}", "--pred-space", "depth",
            "--workers", "0",
        )  # fmt: skip
    exact = json.loads((tmp_path / "exact" / "summary.json").read_text())["datasets"]["world"]
    flat = json.loads((tmp_path / "flat" / "summary.json").read_text())["datasets"]["world"]
    assert exact["scored"] == 3 and exact["abs_rel"] < 1e-6 and exact["delta1"] == 1.0
    assert flat["abs_rel"] > 0.05


def test_run_with_a_tiny_teacher(world, tmp_path):
    checkpoint = write_tiny_checkpoint("depth-anything-v2", tmp_path / "dav2")
    out = tmp_path / "eval"
    output = _invoke(
        "run", "--model", f"depth-anything-v2:{checkpoint}", "--dataset", f"world={world}",
        "--out", out, "--workers", "0", "--device", "cpu",
    )  # fmt: skip
    assert "world" in output
    entry = json.loads((out / "summary.json").read_text())["datasets"]["world"]
    assert entry["samples"] == entry["scored"] == 3 and entry["abs_rel"] > 0
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    assert sorted(r["key"] for r in rows) == KEYS
