"""`labelgen run` with a broken or mismatched checkpoint: one line that names the teacher, the file
or the model, what is wrong and what to do, before any label is written."""

from __future__ import annotations

import shutil

import pytest
from lgrun_helpers import spec_str
from test_lgrun_cli import FAST, check_user_error, invoke

from labelgen.teachers import write_tiny_checkpoint


@pytest.mark.parametrize(
    "damage,what",
    [
        (lambda data: data[: len(data) // 2], "truncated or damaged"),
        (lambda data: b"\0" * 100, "not a safetensors file"),
        (lambda data: data[:5], "no complete header"),
    ],
)
def test_a_damaged_weight_file_is_one_line_naming_teacher_and_file(
    damage, what, dataset, ckpt, tmp_path
):
    broken = shutil.copytree(ckpt, tmp_path / "broken")
    weights = broken / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    result = invoke("--dataset", str(dataset), "--teacher", spec_str("dav", broken), *FAST)
    check_user_error(result, "teacher 'dav'", str(weights), what, "copy or write the checkpoint")
    assert not (dataset / "labels").exists()


def test_a_checkpoint_of_another_model_type_names_the_adapter_that_loads_it(
    dataset, ckpt, tmp_path
):
    result = invoke("--dataset", str(dataset), "--teacher", f"x=dpt:{ckpt}", *FAST)
    check_user_error(
        result,
        "teacher 'x'",
        "'depth_anything' model",
        "'dpt' adapter",
        f"x=depth-anything-v2:{ckpt}",
    )
    dpt = write_tiny_checkpoint("dpt", tmp_path / "dpt")
    result = invoke("--dataset", str(dataset), "--teacher", f"y=depth-anything-v2:{dpt}", *FAST)
    check_user_error(result, "'dpt' model", f"y=dpt:{dpt}")
    assert not any((dataset / "labels").rglob("*.tar"))
