"""`student export --format onnx` for the DPT families: BEiT and Swin V2 export with dynamic
height and width (multiples of 32), plain ViT and hybrid DPT at one fixed square size; ONNX Runtime
agrees with the PyTorch student at the sizes preprocessing.json allows and refuses the others with
a one-line error; fp16 works except for Swin V2, which is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from train_helpers import checkpoint_run, onnx_difference, runner  # noqa: E402
from train_helpers import export_onnx as export  # noqa: E402

from student.cli import app  # noqa: E402
from student.onnx_export import check_input, onnx_session, preprocessing, run_onnx  # noqa: E402

FP32_TOLERANCE = 1e-4  # times the range of the PyTorch output (measured below 1e-5)
FP16_TOLERANCE = 1e-2
FIXED = {"tiny": 384, "tiny-hybrid": 64}
"""The fixed side of the square-only families: the processor side, a hybrid's image_size."""
SLOW = pytest.mark.slow  # a dynamic BEiT or Swin V2 export takes about a minute on two cores
SIZES = ["tiny", "tiny-hybrid", pytest.param("tiny-beit", marks=SLOW)]
ALL = [*SIZES, pytest.param("tiny-swinv2", marks=SLOW)]


def make_run(root: Path, size: str) -> Path:
    """A run directory with one checkpoint of a tiny random DPT checkpoint of `size`."""
    from labelgen.teachers import write_checkpoint

    return checkpoint_run(root, write_checkpoint("dpt", root / "init", size, seed=3))


def allowed_sizes(spec: dict) -> list[tuple[int, int, int]]:
    """Batch, height, width: two sizes preprocessing.json allows, neither the traced one."""
    if spec["input"]["fixed_size"]:
        h, w = spec["input"]["fixed_size"]
        return [(1, h, w), (3, h, w)]
    return [(1, 64, 64), (2, 96, 224)]


def max_relative_difference(run: Path, model_dir: Path, spec: dict) -> float:
    return onnx_difference(run, model_dir, allowed_sizes(spec))


@pytest.mark.parametrize("size", ALL)
def test_fp32_export_matches_pytorch_and_refuses_other_sizes(size, tmp_path):
    run = make_run(tmp_path, size)
    out = export(run, tmp_path / "onnx")
    spec = json.loads((out / "preprocessing.json").read_text())
    fixed = FIXED.get(size)
    assert spec["input"]["fixed_size"] == (None if fixed is None else [fixed, fixed])
    assert spec["input"]["multiple_of"] == 32 and spec["resize"]["square"] == (fixed is not None)
    assert max_relative_difference(run, out, spec) <= FP32_TOLERANCE
    session = onnx_session(out)
    (images,) = session.get_inputs()
    assert [isinstance(d, str) for d in images.shape] == [True, False, fixed is None, fixed is None]
    if fixed is None:
        with pytest.raises(ValueError, match="multiples of 32, at least 64, got 80x64") as error:
            run_onnx(session, np.zeros((1, 3, 80, 64), np.float32))
    else:
        with pytest.raises(ValueError, match=f"only {fixed}x{fixed} inputs") as error:
            run_onnx(session, np.zeros((1, 3, fixed + 32, fixed), np.float32))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("size", SIZES)
def test_fp16_export_stays_close(size, tmp_path):
    import onnx

    run = make_run(tmp_path, size)
    out = export(run, tmp_path / "fp16", "--precision", "fp16")
    types = {init.data_type for init in onnx.load(out / "model.onnx").graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    spec = json.loads((out / "preprocessing.json").read_text())
    assert spec["format"]["precision"] == "fp16"
    assert max_relative_difference(run, out, spec) <= FP16_TOLERANCE


def test_swinv2_refuses_fp16_in_one_line(tmp_path):
    run = make_run(tmp_path, "tiny-swinv2")
    args = ["export", str(run), "--format", "onnx", "--precision", "fp16"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "fp16 is not offered for a MiDaS v3.1 Swin V2 student" in result.output
    assert "export it in fp32" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("size", "side", "square", "dynamic"),
    [
        ("tiny", 384, True, ["batch"]),
        ("tiny-hybrid", 64, True, ["batch"]),
        ("tiny-beit", 64, False, ["batch", "height", "width"]),
        ("tiny-swinv2", 64, False, ["batch", "height", "width"]),
    ],
)
def test_preprocessing_json_says_each_familys_rule(size, side, square, dynamic, tmp_path):
    from labelgen.teachers import write_checkpoint
    from student.model import load_student

    student = load_student(write_checkpoint("dpt", tmp_path, size), frozen_encoder=False)
    student.mean.fill_(0.25)  # the student's own normalization is what the file says
    spec = preprocessing(student, "fp32")
    assert spec["family"] == student.family.name
    assert spec["normalization"]["mean"] == [0.25] * 3
    assert spec["normalization"]["std"] == pytest.approx([0.5] * 3)
    assert spec["input"]["dynamic"] == dynamic and spec["input"]["multiple_of"] == 32
    assert spec["resize"]["short_side"] == side and spec["resize"]["keep_aspect"] is not square
    assert (str(side) + "x" in spec["input"]["height_width"]) is square


def test_check_input_names_the_size_to_use():
    with pytest.raises(ValueError, match=r"only 384x384 inputs .* got 384x416; resize to 384x384"):
        check_input(np.zeros((1, 3, 384, 416), np.float32), 32, 384)
    check_input(np.zeros((2, 3, 384, 384), np.float32), 32, 384)
    with pytest.raises(ValueError, match="multiples of 32"):
        check_input(np.zeros((1, 3, 64, 70), np.float32), 32)
    check_input(np.zeros((1, 3, 56, 70), np.float32))  # Depth Anything's default rule
