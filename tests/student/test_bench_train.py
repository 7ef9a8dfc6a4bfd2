"""The training-step benchmark runs end to end in its tiny-model smoke mode (a Depth Anything
and a DPT student), takes students of every family, and counts their training FLOPs."""

from __future__ import annotations

import json

import pytest

from student.bench.train import (
    DEFAULT,
    SMOKE,
    STUDENTS,
    TINY,
    chosen_students,
    main,
    train_flops,
    write_student,
)
from student.model import load_student


@pytest.mark.slow
def test_train_benchmark_smoke(capsys, tmp_path):
    main(["--smoke", "--workdir", str(tmp_path)])
    rows = json.loads(capsys.readouterr().out)
    assert [row["student"] for row in rows] == ["dav2-tiny", "dpt-tiny"]
    assert [row["side"] for row in rows] == [112, 128]  # 112 views; DPT: a multiple of 32
    for row in rows:
        assert row["real_step_s"] > 0 and row["replay_step_s"] > 0
        assert row["data_stall"] == pytest.approx(1 - row["replay_step_s"] / row["real_step_s"])
        assert row["train_tflop_per_image"] > 0
        assert row["images_over_floor"] == pytest.approx(
            row["images_per_s"] / row["floor_images_per_s"]
        )


def test_students_by_name_or_by_depth_anything_size():
    assert chosen_students(None, None, smoke=False) == DEFAULT == ["dav2-small", "dav2-large"]
    assert chosen_students(None, None, smoke=True) == SMOKE
    assert chosen_students(None, ["small", "large"], smoke=False) == DEFAULT  # pipeline bench gpu
    assert chosen_students(["dpt-large", "dav2-small"], ["small"], False) == [
        "dpt-large",
        "dav2-small",
    ]
    for name in ("dav2-large", "dpt-hybrid", "beit-large-512", "beit-base-384"):
        assert name in STUDENTS
    assert {"swinv2-tiny-256", "swinv2-base-384", "swinv2-large-384"} <= set(STUDENTS)
    with pytest.raises(SystemExit):
        main(["--student", "dpt-huge"])


@pytest.mark.parametrize("name", sorted(TINY))
def test_training_flops_are_counted_for_every_family(tmp_path, name):
    student = load_student(write_student(tmp_path / name, name))
    flops = train_flops(student, 64)
    assert flops is not None and flops > 0
    # the frozen encoder's forward of the feature term counts: without it, fewer FLOPs
    student.frozen = None
    assert 0 < train_flops(student, 64) < flops


def test_a_model_the_counter_cannot_run_has_no_floor(tmp_path):
    student = load_student(write_student(tmp_path / "s", "dpt-tiny"))
    assert train_flops(student, 13) is None  # no 13 px input: not computed, no failure
