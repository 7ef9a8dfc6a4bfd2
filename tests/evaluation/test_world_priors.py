"""The world study's priors and ceiling, the bar its teachers must clear, and the DPT its
cross-architecture pair starts from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.study.plan import SCALES, TEACHER_BAR
from evaluation.study.priors import fit_horizon, load_split, mean_abs_rel, ramp, token_average
from evaluation.study.report import curve_figure, curve_table, curves, teacher_verdict
from evaluation.study.run import Study
from pipeline.world.files import FORMAT, WORLD_JSON


def flat_ground(folder: Path, horizons: list[float], shape=(48, 72)) -> Path:
    """A world split of a level camera over flat ground: depth ∝ 1 / (row − h·H) below the
    horizon at fraction h, invalid (sky) above it."""
    folder.mkdir(parents=True)
    h, w = shape
    rows = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1) + 0.5
    for i, frac in enumerate(horizons):
        below = rows - frac * h
        mask = below > 0.5
        depth = np.where(mask, 30.0 / np.maximum(below, 1e-3), 0.0).astype(np.float32)
        np.save(folder / f"{i:06d}.depth.npy", depth)
        np.save(folder / f"{i:06d}.mask.npy", mask)
        Image.new("RGB", (w, h), (90, 120, 150)).save(folder / f"{i:06d}.png")
    (folder / WORLD_JSON).write_text(json.dumps({"format": FORMAT, "images": len(horizons)}))
    return folder


def test_the_ramp_is_zero_above_its_horizon_and_linear_below():
    r = ramp(0.5, (10, 4))
    assert r.shape == (10, 4)
    assert np.all(r[:6] < 1e-5)
    np.testing.assert_allclose(np.diff(r[6:, 0]), 1.0, atol=1e-6)
    assert np.all(r == r[:, :1])  # the same in every column: it ignores the image


def test_the_fitted_horizon_makes_the_ramp_exact_on_a_flat_world(tmp_path):
    world = flat_ground(tmp_path / "train", [0.6, 0.6, 0.6])
    h = fit_horizon(world)
    # the sky is not scored, so any horizon at or above the true one is a line over the ground
    # (exact after the protocol's affine fit); one below it bends the ground
    assert h <= 0.6 + 1e-9
    samples = load_split(world)
    assert mean_abs_rel(samples, lambda hw: ramp(h, hw)) < 0.02
    assert mean_abs_rel(samples, lambda hw: ramp(0.75, hw)) > 0.2


def test_the_token_ceiling_averages_valid_disparity_per_token_cell():
    depth = np.full((28, 42), 4.0, dtype=np.float32)
    mask = np.ones_like(depth, dtype=bool)
    np.testing.assert_allclose(token_average(depth, mask, 28), 0.25, rtol=1e-6)
    # invalid pixels do not enter the average, whatever their depth
    depth[:, :5] = 1e-6
    mask[:, :5] = False
    np.testing.assert_allclose(token_average(depth, mask, 28), 0.25, rtol=1e-6)
    # two tokens on the short side (28 // 14): a step between the two halves is kept per cell
    depth = np.where(np.arange(28)[:, None] < 14, 2.0, 4.0).repeat(42, 1).astype(np.float32)
    out = token_average(depth, np.ones_like(depth, dtype=bool), 28)
    assert out[0, 0] == pytest.approx(0.5) and out[-1, 0] == pytest.approx(0.25)
    # no finer detail than the grid survives: a one-pixel stripe is averaged away
    depth = np.full((28, 42), 4.0, dtype=np.float32)
    depth[:, 20] = 1.0
    out = token_average(depth, np.ones_like(depth, dtype=bool), 28)
    assert out[:, 20].max() < 0.4


def _summary(study: Study, name: str, split: str, abs_rel: float, delta1: float) -> None:
    folder = study.path("eval", study.eval_name(name, split))
    folder.mkdir(parents=True)
    world = {"abs_rel": abs_rel, "delta1": delta1}
    (folder / "summary.json").write_text(json.dumps({"datasets": {"world": world}}))


@pytest.mark.parametrize(
    ("t1", "t1_ood", "passed"),
    [
        ((0.25, 0.62), (0.40, 0.55), True),
        ((0.27, 0.62), (0.40, 0.55), False),  # AbsRel above 0.7x the ramp's 0.38
        ((0.25, 0.59), (0.40, 0.55), False),  # δ1 under the ramp's 0.45 + 0.15
        ((0.25, 0.62), (0.46, 0.55), False),  # the second split's ramp (0.45) beats it
    ],
)
def test_the_verdict_applies_the_bar_on_both_splits(tmp_path, t1, t1_ood, passed):
    assert TEACHER_BAR == (0.7, 0.15)
    study = Study(tmp_path, SCALES["smoke"], jobs=1)
    _summary(study, "prior-ramp", "test", 0.38, 0.45)
    _summary(study, "prior-ramp", "ood", 0.45, 0.50)
    _summary(study, "t1", "test", *t1)
    _summary(study, "t1", "ood", *t1_ood)
    verdict = teacher_verdict(study)
    assert verdict.passed is passed
    assert ("NOT" in verdict.line) is not passed


def test_no_verdict_before_the_teachers_are_scored(tmp_path):
    verdict = teacher_verdict(Study(tmp_path, SCALES["smoke"], jobs=1))
    assert not verdict.passed and "not scored yet" in verdict.line


def test_learning_curves_read_every_scored_checkpoint(tmp_path):
    study = Study(tmp_path, SCALES["smoke"], jobs=1)
    for run, step, abs_rel, delta1 in (
        ("t1", 5, 0.5, 0.3),
        ("t1", 10, 0.4, 0.4),
        ("t2", 10, 0.6, 0.2),
    ):
        folder = study.curve_dir(tmp_path / "runs" / run / "checkpoints" / f"step_{step:07d}.pt")
        folder.mkdir(parents=True)
        world = {"abs_rel": abs_rel, "delta1": delta1}
        (folder / "summary.json").write_text(json.dumps({"datasets": {"world": world}}))
    assert curves(study) == {"t1": [(5, 0.5, 0.3), (10, 0.4, 0.4)], "t2": [(10, 0.6, 0.2)]}
    assert "| t1 | 10 | 0.400 | 0.400 |" in curve_table(study)
    figure = curve_figure(study)
    assert figure is not None and Image.open(figure).size == (730, 260)


def test_scale_changes_are_typed_and_checked():
    import argparse

    from evaluation.bench.world import with_changes

    parser = argparse.ArgumentParser()
    cpu = SCALES["cpu"]
    changed = with_changes(
        cpu,
        ["teacher_steps=3000", "teacher_lr=5e-4", "teacher_sizes=small,mini", "ood_shape=168,224"],
        parser,
    )
    assert changed.teacher_steps == 3000 and changed.teacher_lr == 5e-4
    assert changed.teacher_sizes == ("small", "mini") and changed.ood == (168, 224)
    assert changed.student_steps == cpu.student_steps
    for bad in ("teacher_steps=many", "nope=1", "teacher_steps"):
        with pytest.raises(SystemExit):
            with_changes(cpu, [bad], parser)


def test_the_cross_architecture_pair_starts_from_a_dpt_of_t2s_size(tmp_path):
    from evaluation.study.dpt import DPT_INIT, MIRRORS, write_dpt_init
    from evaluation.study.plan import ROWS, STUDENTS
    from pipeline.model.depth_anything import write_depth_anything
    from student.model import load_student

    pair = {st.name: st for st in STUDENTS if st.init == DPT_INIT}
    assert sorted(pair) == ["dpt-base", "dpt-both"] and MIRRORS == {DPT_INIT: 1}
    base = next(st for st in STUDENTS if st.name == "base")
    both = next(st for st in STUDENTS if st.name == "both")
    assert (pair["dpt-base"].config, pair["dpt-both"].config) == (base.config, both.config)
    assert pair["dpt-base"].teachers == base.teachers == ("t1",)
    assert set(pair.values()) <= set(ROWS["all"]) and set(ROWS["dpt"]) == set(pair.values())
    assert not set(pair.values()) & set(ROWS["table2"])  # the reduced GPU study is unchanged
    assert Study(tmp_path, SCALES["smoke"], 1, rows="all").dpt_inits() == (DPT_INIT,)
    assert Study(tmp_path, SCALES["smoke"], 1, rows="table2").dpt_inits() == ()

    view = SCALES["smoke"].size  # 56: a DPT computes at 64, the same 4x4 token grid as DINOv2
    dpt = load_student(write_dpt_init(tmp_path / "dpt", "tiny", 1, view))
    da = load_student(write_depth_anything(tmp_path / "da", "tiny"))
    assert dpt.family.name == "dpt" and dpt.family.side(dpt.model.config, view) == 64
    assert dpt.model.config.image_size == 64  # position embeddings at the study's side
    vit, dino = dpt.model.config, da.model.config.backbone_config
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        assert getattr(vit, field) == getattr(dino, field)
    assert vit.intermediate_size == dino.mlp_ratio * dino.hidden_size
    assert vit.neck_hidden_sizes == da.model.config.neck_hidden_sizes
    dpt.side = 64
    out = dpt(torch.rand(1, 3, view, view))
    assert out["tokens"].shape[1] == (view // 14) ** 2 and out["pred"].shape[-1] == view


def test_the_dpt_start_has_a_row_beside_the_teachers(tmp_path):
    from evaluation.study.report import rows

    study = Study(tmp_path, SCALES["smoke"], jobs=1)
    _summary(study, "t2-dpt", "test", 0.3, 0.5)
    names = [row["name"] for row in rows(study)]
    assert names.index("start t2-dpt") == names.index("teacher t2") + 1
    assert Study(tmp_path, SCALES["smoke"], 1, rows="table2").dpt_inits() == ()
