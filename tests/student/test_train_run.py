"""`student train`: the run directory, refused inputs, the ablation configs, teachers per step,
a 2-process torchrun (gloo) run, resolved settings, export and predict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from train_helpers import FAST, read_metrics, runner, train

from student.cli import app


def test_run_directory_explains_itself(train_setup, tmp_path):
    dataset, init = train_setup
    metrics = train(tmp_path / "run", dataset, init, "--steps", "3", "--batch-size", "2")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert {"sc", "lg", "feat", "grad", "loss", "lr", "data_time", "step_time", "teacher"} <= set(
        metrics[0]
    )
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "env.json").is_file()
    assert (run / "checkpoints" / "step_0000003.pt").is_file()
    again = runner.invoke(
        app,
        [
            "train",
            "--out",
            str(run),
            "--dataset",
            str(dataset),
            "--teacher",
            "alpha",
            "--init",
            str(init),
        ],
    )
    assert again.exit_code == 2 and "--resume" in again.output


def _refused(*args: str) -> str:
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "\nerror: " in "\n" + result.output
    return result.output


def test_bad_inputs_are_refused_before_the_run_directory_is_written(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    good = ["--out", str(run), "--dataset", str(dataset), "--teacher", "alpha", *FAST]
    assert "no_such" in _refused(*good, "--init", str(init), "--teacher", "no_such")
    assert "2 teacher weights for 1 teachers" in _refused(
        *good, "--init", str(init), "--set", "data.teacher_weights=[0.5,0.5]"
    )
    assert "labelgen tiny-checkpoint" in _refused(*good, "--init", str(init) + "-typo")
    from transformers import GLPNConfig

    GLPNConfig().save_pretrained(tmp_path / "glpn")  # a depth model of no student family
    refused = _refused(*good, "--init", str(tmp_path / "glpn"))
    assert "a 'glpn' model is no student family; students are:" in refused
    assert "Depth Anything" in refused and "MiDaS v3.1 Swin V2" in refused
    assert not run.exists()  # so the corrected command needs no --resume
    assert "continues" in _refused("--out", str(run), "--resume", "--batch-size", "5")
    assert "not a run directory" in _refused("--out", str(run), "--resume", "--steps", "5")


@pytest.mark.parametrize("config", ["table1-local-global-none", "table2-base"])
def test_ablation_configs_train(train_setup, tmp_path, config):
    dataset, init = train_setup
    path = Path(__file__).parents[2] / "configs" / "ablations" / f"{config}.yaml"
    metrics = train(tmp_path / config, dataset, init, "--config", str(path), "--steps", "2")
    assert len(metrics) == 2 and all(m["loss"] == m["loss"] for m in metrics)  # finite, not NaN
    if config == "table2-base":
        assert "sc" in metrics[0] and "lg" not in metrics[0]
    else:
        assert "sc" not in metrics[0] and any("lg" in m for m in metrics)


def test_accumulation_keeps_one_teacher_per_step_and_per_sample_mode_logs_each(
    train_setup, tmp_path
):
    dataset, init = train_setup
    weights = ["--set", "data.teacher_weights=[1, 1]", "--steps", "4", "--batch-size", "1"]
    metrics = train(tmp_path / "acc", dataset, init, *weights, "--set", "optim.accumulate=2")
    assert [len(m["teacher"]) for m in metrics] == [2] * 4  # two micro-batches per step
    assert all(len(set(m["teacher"])) == 1 for m in metrics)
    per_sample = ["--set", "data.per_sample_teacher=true", "--steps", "2", "--batch-size", "2"]
    metrics = train(tmp_path / "ps", dataset, init, *per_sample)
    for m in metrics:
        (teachers,) = m["teacher"]  # one micro-batch, a teacher per sample
        assert len(teachers) == 2 and set(teachers) <= {"alpha", "beta"}


def test_two_process_torchrun_gloo(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "student.cli",
        "train",
        "--out",
        str(run),
        "--dataset",
        str(dataset),
        "--teacher",
        "alpha",
        "--teacher",
        "beta",
        "--init",
        str(init),
        "--steps",
        "3",
        "--batch-size",
        "1",
        "--set",
        "optim.accumulate=2",  # the first micro-batch of each step runs under DDP's no_sync
        *FAST,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(len(m["teacher"]) == 2 for m in metrics)
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    # continued to more steps by the same two processes: every rank agrees on the new total
    resume = [*cmd[: cmd.index("train") + 1], "--out", str(run), "--resume", "--steps", "5"]
    done = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [m["step"] for m in read_metrics(run)] == [1, 2, 3, 4, 5]
    assert [e["steps"] for e in yaml.safe_load((run / "continued.yaml").read_text())] == [5]


NORMS = ("norm_sc", "norm_lg", "norm_grad")


@pytest.mark.parametrize(("teachers", "resolved"), [(1, "none"), (2, "hybrid")])
def test_auto_normalization_for_every_term_and_paths_recorded_absolute(
    train_setup, tmp_path, monkeypatch, teachers, resolved
):
    """`auto` is resolved once, when the run starts: none with one teacher, hybrid with several;
    config.yaml records the resolved normalizations."""
    dataset, init = train_setup
    monkeypatch.chdir(dataset.parent)
    out = f"run-{teachers}"
    auto = ["--set", "loss.norm_lg=auto", "--set", "loss.norm_grad=auto", "--steps", "1"]
    args = ["train", "--out", out, "--dataset", dataset.name, "--init", init.name]
    chosen = [flag for name in ["alpha", "beta"][:teachers] for flag in ("--teacher", name)]
    result = runner.invoke(app, [*args, *chosen, *FAST, *auto])
    assert result.exit_code == 0, result.output
    config = (dataset.parent / out / "config.yaml").read_text()
    assert f"dataset: {dataset}" in config and f"init: {init}" in config
    loss = yaml.safe_load(config)["settings"]["loss"]  # the default norm_sc is auto too
    assert {name: loss[name] for name in NORMS} == dict.fromkeys(NORMS, resolved)
    monkeypatch.chdir(tmp_path)
    exported = runner.invoke(app, ["export", str(dataset.parent / out), "--out", "hf"])
    assert exported.exit_code == 0, exported.output


def test_export_loads_in_transformers_and_predict_writes_maps(train_setup, tmp_path):
    import numpy as np
    from PIL import Image
    from transformers import AutoModelForDepthEstimation, pipeline

    dataset, init = train_setup
    run, own_init = tmp_path / "run", tmp_path / "init"
    shutil.copytree(init, own_init)
    train(run, dataset, own_init, "--steps", "2", "--batch-size", "1")
    shutil.rmtree(own_init)  # the run directory alone is enough to export and predict
    hf = tmp_path / "hf"
    result = runner.invoke(app, ["export", str(run), "--out", str(hf)])
    assert result.exit_code == 0, result.output
    assert f"exported {run} to {hf}" in result.output
    missing = runner.invoke(app, ["export", str(run), "--out", str(hf), "--step", "1"])
    assert missing.exit_code == 2 and "step_0000002.pt" in missing.output  # what there is
    assert AutoModelForDepthEstimation.from_pretrained(hf) is not None
    photo = sorted((dataset.parent / "photos").glob("*.jpg"))[1]
    depth = pipeline("depth-estimation", model=str(hf))(Image.open(photo))
    assert depth["predicted_depth"].ndim >= 2
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(hf), str(photo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    disparity = np.load(out / f"{photo.stem}.npy")
    assert disparity.shape == Image.open(photo).size[::-1] and np.isfinite(disparity).all()
    assert Image.open(out / f"{photo.stem}.png").size == Image.open(photo).size
    twin = tmp_path / "other" / photo.name
    twin.parent.mkdir()
    shutil.copy(photo, twin)
    clash = runner.invoke(app, ["predict", str(hf), str(photo), str(twin), "--out", str(out)])
    assert clash.exit_code == 2 and "both be written as" in clash.output
    from_run = runner.invoke(app, ["predict", str(run), str(photo), "--out", str(tmp_path / "p2")])
    assert from_run.exit_code == 0, from_run.output
    assert np.allclose(np.load(tmp_path / "p2" / f"{photo.stem}.npy"), disparity, atol=1e-4)
