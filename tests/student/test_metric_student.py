"""A metric student (`student.output=metric`): its labels are the canonical depth of the view it
sees (checked against the world rendered again with each view's own camera), its terms, and what
`student train` refuses or records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_column
from dataset_helpers import read_plan
from train_helpers import read_metrics, runner

from labelgen.teachers import write_tiny_checkpoint
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.world.degradation import Degradation
from pipeline.world.files import WorldSettings, load_scene, render_world
from pipeline.world.labels import write_world_column
from pipeline.world.render import render
from student.cli import app
from student.config import DataSettings, LossSettings, StudentSettings
from student.data.augment import AugmentSettings
from student.data.columns import FAR_DEPTH
from student.data.stream import DistillStream
from student.metric_terms import MetricLabels
from student.model import load_student, save_hf
from student.objective import Objective, uncanonical_warning

TILE = SIZE = 64  # the view at the tile side: its label is the stored map, not resampled
MODEL_SIDE = 70  # the student resizes the view to its side: one more scale
PLAN = PrepareSettings(tile=TILE, min_region=80, regions=2, shard_size=2)
METRIC = StudentSettings(output="metric", canonical_focal=300.0, max_depth=80)
FAST = ["--set", f"data.size={SIZE}", "--set", "data.workers=0", "--set", "log_every=1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """A world split prepared with its cameras, its exact (metric) and degraded (relative)
    columns; the same PNGs prepared as plain photos (no camera) with a metric column; and a tiny
    Depth Anything checkpoint."""
    root = tmp_path_factory.mktemp("metric-student")
    world = root / "world"
    render_world(world, 4, WorldSettings(seed=5, height=120, width=180), workers=1, progress=False)
    dataset = prepare([str(world)], root / "ds", PLAN, progress=False, workers=1).out
    write_world_column(dataset, world, "exact", progress=False)
    relative = Degradation(distortion=0.2, noise=0.02)  # disparity, affine-invariant
    write_world_column(dataset, world, "degraded", relative, progress=False)
    plain = root / "plain"
    plain.mkdir()
    for png in sorted(world.glob("*.png")):
        shutil.copy(png, plain / png.name)
    bare = prepare([str(plain)], root / "bare", PLAN, progress=False, workers=1).out
    write_column(bare, "metres", kind="metric_depth", invariance="metric")
    init = write_tiny_checkpoint("depth-anything-v2", root / "init")
    return dataset, world, bare, init


def _batches(dataset: Path, teachers: list[str], mode: str = "cross_context") -> list[dict]:
    data = DataSettings(mode=mode, size=SIZE, workers=0, augment=AugmentSettings(flip_p=0.5))
    return list(DistillStream(dataset, teachers, data, batch_size=2, seed=3, metric=True))


def test_labels_are_the_canonical_depth_of_the_view_rendered_with_its_own_camera(world):
    dataset, world_dir, _, _ = world
    labels = MetricLabels(METRIC, [True], MODEL_SIDE / SIZE)
    seen_far = seen = 0
    for batch in _batches(dataset, ["exact"]):
        canonical = labels.canonical(batch)
        for i, key in enumerate(batch["key"]):
            scene = load_scene(world_dir / f"{key}.json")
            box = read_plan(dataset)[key]["regions"][int(batch["region"][i])]["box"]
            view = render(scene, SIZE, SIZE, tuple(box), rgb=False)
            depth, valid = view.depth, view.valid
            if bool(batch["flip"][i]):
                depth, valid = depth[:, ::-1], valid[:, ::-1]
            # the focal length of the model's input: the scene's, resized twice
            fx_model = scene.camera.fx * SIZE / (box[2] - box[0]) * MODEL_SIDE / SIZE
            want = depth * METRIC.canonical_focal / fx_model
            got = canonical["sc"][i, 0].numpy()
            inner = valid & np.roll(valid, 1, 0) & np.roll(valid, -1, 0)  # off the sky's edge
            inner &= np.roll(valid, 1, 1) & np.roll(valid, -1, 1)
            np.testing.assert_allclose(got[inner], want[inner], rtol=2e-3)
            sky = ~valid & ~np.roll(valid, 1, 0) & ~np.roll(valid, -1, 0)
            if sky.any():  # the sky is far beyond anything the student outputs
                assert (got[sky] >= METRIC.max_depth).all()
                seen_far += 1
            seen += 1
    assert seen == 4 and seen_far >= 1


def test_canonical_labels_are_the_metres_when_the_view_has_the_canonical_focal_length(world):
    dataset = world[0]
    batch = _batches(dataset, ["exact"])[0]
    scale = 1.0
    settings = StudentSettings(output="metric", canonical_focal=float(batch["focal"][0, 0]))
    one = {k: v[:1] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    got = MetricLabels(settings, [True], scale).canonical(one)
    assert torch.allclose(got["sc"], one["sc"], equal_nan=True, rtol=1e-6)
    raw = MetricLabels(StudentSettings(output="metric", canonical_focal=None), [True])
    assert torch.equal(raw.canonical(one)["sc"].nan_to_num(), one["sc"].nan_to_num())


def _objective(teachers: list[bool], **loss) -> Objective:
    settings = LossSettings(lambda_feat=0, **loss)
    return Objective(settings, len(teachers), None, MetricLabels(METRIC, teachers, 1.0))


def test_the_label_itself_costs_nothing_and_a_wrong_scale_or_a_near_sky_costs(world):
    dataset = world[0]
    batch = next(b for b in _batches(dataset, ["exact"]) if (b["sc"] >= FAR_DEPTH).any())
    objective = _objective([True], metric_loss="log_l1")
    target = objective.metric.canonical(batch)["sc"]
    far = target >= METRIC.max_depth
    perfect = torch.where(far, float(METRIC.max_depth), target.nan_to_num(1.0))
    terms = objective({"pred": perfect}, batch)
    assert float(terms["sc"]) < 1e-5 and float(terms["grad"]) < 1e-5
    assert float(terms["lg"]) < 0.05  # tiles: native-resolution labels, resampled
    doubled = objective({"pred": torch.where(far, perfect, 2 * perfect)}, batch)
    assert float(doubled["sc"]) == pytest.approx(np.log(2), rel=1e-3)  # log-L1 sees the scale
    assert float(doubled["grad"]) < 1e-4  # log gradients do not
    near_sky = objective({"pred": torch.where(far, 1.0, perfect)}, batch)
    assert float(near_sky["sc"]) > 0.1 * np.log(0.95 * METRIC.max_depth) * 0.9


def test_a_relative_teacher_feeds_only_invariant_terms_on_the_inverse_prediction(world):
    dataset = world[0]
    batch = _batches(dataset, ["exact", "degraded"])[0]
    objective = _objective([True, False], norm_sc="global", norm_grad="global")
    pred = torch.rand(2, 1, SIZE, SIZE) * 10 + 1
    for teacher, invariant in ((1, True), (0, False)):  # degraded (relative), exact (metric)
        batch["teacher_index"] = torch.tensor([teacher, teacher])
        base = objective({"pred": pred}, batch)
        scaled = objective({"pred": 3 * pred}, batch)
        same = float(scaled["sc"]) == pytest.approx(float(base["sc"]), rel=1e-4)
        assert same == invariant
    batch["teacher_index"] = torch.tensor([0, 1])  # per-sample teachers: both groups count
    mixed = objective({"pred": pred}, batch)
    assert set(mixed) == {"sc", "lg", "grad", "loss"}
    with pytest.raises(ValueError, match="loss.norm_sc is none"):
        _objective([True, False], norm_sc="none")
    with pytest.raises(ValueError, match="at least one metric teacher"):
        _objective([False])


def _train(out: Path, dataset: Path, init: Path, teachers: list[str], *extra: str):
    args = ["train", "--out", str(out), "--dataset", str(dataset), "--init", str(init)]
    for teacher in teachers:
        args += ["--teacher", teacher]
    return runner.invoke(app, [*args, "--steps", "3", "--batch-size", "2", *FAST, *extra])


def test_student_train_metric_learns_canonical_depth_and_records_f_c(world, tmp_path, caplog):
    dataset, _, _, init = world
    metric = ["--set", "student.output=metric", "--set", "student.canonical_focal=300"]
    with caplog.at_level("INFO", logger="student"):
        result = _train(tmp_path / "run", dataset, init, ["exact", "degraded"], *metric)
    assert result.exit_code == 0, result.output
    said = caplog.text
    assert "exact feeds sc, lg, grad (silog on log canonical depth at f_c = 300 px)" in said
    assert "degraded feeds sc, lg, grad (1/prediction, normalized)" in said
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["depth_estimation_type"] == "metric" and config["max_depth"] == 80
    assert config["canonical_focal_px"] == 300.0
    records = read_metrics(tmp_path / "run")
    assert all(np.isfinite(r["loss"]) for r in records) and len(records) == 3


def test_student_train_metric_refuses_what_cannot_teach_it(world, tmp_path):
    dataset, _, bare, init = world
    metric = ["--set", "student.output=metric"]
    result = _train(tmp_path / "a", dataset, init, ["degraded"], *metric)
    assert result.exit_code == 2 and "at least one metric teacher" in result.output
    result = _train(tmp_path / "b", bare, init, ["metres"], *metric)
    assert result.exit_code == 2 and "4 of 4 images have no camera" in result.output
    assert "student.canonical_focal=null" in result.output
    blind = ["--set", "student.canonical_focal=null"]
    raw = _train(tmp_path / "c", bare, init, ["metres"], *metric, *blind)
    assert raw.exit_code == 0, raw.output
    dpt = write_tiny_checkpoint("dpt", tmp_path / "dpt")
    result = _train(tmp_path / "d", dataset, dpt, ["exact"], *metric)
    assert result.exit_code == 2 and "needs a Depth Anything student" in result.output


def test_a_relative_student_is_warned_that_unnormalized_metric_labels_change_with_the_crop():
    one = LossSettings().resolved(1)  # auto: none with one teacher
    said = uncanonical_warning(one, {"exact": "metric"}, metric_student=False)
    assert said is not None and "loss.norm_sc=none with metric teachers exact" in said
    assert "meaningful on canonical labels only" in said
    assert uncanonical_warning(one, {"exact": "metric"}, metric_student=True) is None
    assert uncanonical_warning(one, {"dav2": "affine"}, metric_student=False) is None
    two = LossSettings().resolved(2)  # hybrid everywhere
    assert uncanonical_warning(two, {"exact": "metric", "dav2": "affine"}, False) is None


def test_a_relative_init_turned_metric_starts_at_a_plausible_depth_nearer_where_it_was(
    world, tmp_path
):
    init = world[3]
    relative = load_student(init, frozen_encoder=False).eval()
    metric = load_student(init, frozen_encoder=False, output=METRIC).eval()
    x = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        disparity, depth = relative(x)["pred"].flatten(), metric(x)["pred"].flatten()
    # not saturated at max_depth (where the sigmoid has no gradient): about a tenth of it
    assert 0.03 * METRIC.max_depth < float(depth.median()) < 0.3 * METRIC.max_depth
    assert float(depth.max()) < 0.99 * METRIC.max_depth
    # more disparity, nearer: the orders are reversed
    rank = lambda v: v.argsort().argsort().float()  # noqa: E731
    assert float(torch.corrcoef(torch.stack([rank(disparity), rank(depth)]))[0, 1]) < -0.9
    # an init that is metric already keeps its head
    save_hf(metric, tmp_path / "metric-init")
    reloaded = load_student(tmp_path / "metric-init", frozen_encoder=False, output=METRIC).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x)["pred"], metric(x)["pred"])


@pytest.mark.slow
def test_a_metric_student_with_a_relative_teacher_trains_under_torchrun(world, tmp_path):
    """DDP (gloo), two ranks, teachers drawn per sample: a rank's batch may hold metric samples,
    relative ones or both, and every parameter still gets its gradient; then it resumes."""
    dataset, _, _, init = world
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "student.cli", "train", "--out", str(run), "--dataset", str(dataset)]
    cmd += ["--teacher", "exact", "--teacher", "degraded", "--init", str(init), *FAST]
    cmd += ["--steps", "2", "--batch-size", "2", "--set", "student.output=metric"]
    cmd += ["--set", "data.per_sample_teacher=true", "--set", "loss.norm_sc=global"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) for r in records)
    cmd = [*cmd[: cmd.index("--dataset")], "--resume", "--steps", "3"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
