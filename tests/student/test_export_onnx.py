"""`student export --format onnx`: ONNX Runtime (CPU) runs the model at sizes other than the
traced one and agrees with the PyTorch student; preprocessing.json says what to feed it; bad
inputs, formats and a missing extra get clear errors; `student predict` runs the export and
writes what it writes for the run."""

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
from student.onnx_export import onnx_session, run_onnx  # noqa: E402

SIZES = [(1, 56, 70), (2, 84, 112), (1, 518, 518)]
"""Batch, height, width: none is the traced 2x56x70 twice; 518² is the position embeddings'
own grid (eager mode skips their interpolation there)."""
FP32_TOLERANCE = 1e-4  # times the range of the PyTorch output
FP16_TOLERANCE = 1e-2  # float16 encoder and neck: measured about 1e-3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory with one checkpoint of a tiny Depth Anything (as tests/test_file_modes)."""
    from labelgen.teachers import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("onnx")
    return checkpoint_run(root, write_tiny_checkpoint("depth-anything-v2", root / "init", seed=3))


@pytest.fixture(scope="module")
def fp32_dir(run_dir, tmp_path_factory) -> Path:
    return export(run_dir, tmp_path_factory.mktemp("fp32") / "onnx")


def max_relative_difference(run: Path, model_dir: Path) -> float:
    """The largest `max |onnx - torch| / (torch max - torch min)` over `SIZES`."""
    return onnx_difference(run, model_dir, SIZES)


def test_onnx_runs_at_other_sizes_and_matches_pytorch(run_dir, fp32_dir):
    assert max_relative_difference(run_dir, fp32_dir) <= FP32_TOLERANCE
    session = onnx_session(fp32_dir)
    (images,), (disparity,) = session.get_inputs(), session.get_outputs()
    assert images.name == "images" and images.type == "tensor(float)"
    assert [isinstance(d, str) for d in images.shape] == [True, False, True, True]  # B, H, W
    assert disparity.name == "disparity" and isinstance(disparity.shape[2], str)


def test_preprocessing_json_and_card_say_what_to_feed(fp32_dir):
    from huggingface_hub import ModelCard

    spec = json.loads((fp32_dir / "preprocessing.json").read_text())
    assert spec["format"] == {
        "name": "onnx",
        "file": "model.onnx",
        "opset": 18,
        "precision": "fp32",
    }
    assert spec["input"]["range"] == [0.0, 1.0] and spec["input"]["layout"] == "NCHW"
    assert spec["input"]["channels"] == "RGB" and spec["input"]["dtype"] == "float32"
    assert spec["normalization"]["inside_model"] is True
    assert spec["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert spec["resize"]["short_side"] == 518 and spec["resize"]["multiple_of"] == 14
    assert spec["family"] == "depth-anything" and spec["resize"]["keep_aspect"] is True
    assert spec["input"]["multiple_of"] == 14 and spec["input"]["fixed_size"] is None
    assert spec["output"]["name"] == "disparity"
    card = ModelCard.load(fp32_dir / "README.md")
    assert card.data.library_name == "onnx" and "onnx" in card.data.tags
    assert card.data.pipeline_tag == "depth-estimation"


def test_bad_inputs_formats_and_precisions_are_clear_errors(run_dir, fp32_dir, tmp_path):
    session = onnx_session(fp32_dir)
    with pytest.raises(ValueError, match="multiples of 14"):
        run_onnx(session, np.zeros((1, 3, 57, 70), np.float32))
    with pytest.raises(ValueError, match="float32"):
        run_onnx(session, np.zeros((1, 3, 56, 70), np.uint8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        run_onnx(session, np.zeros((56, 70, 3), np.float32))
    args = ["export", str(run_dir), "--out", str(tmp_path / "x")]
    wrong = runner.invoke(app, [*args, "--format", "tflite"])
    assert wrong.exit_code == 2 and "'tflite' is not one of hf, onnx" in wrong.output
    hf16 = runner.invoke(app, [*args, "--precision", "fp16"])
    assert hf16.exit_code == 2 and "is for --format onnx" in hf16.output
    bf16 = runner.invoke(app, [*args, "--format", "onnx", "--precision", "bf16"])
    assert bf16.exit_code == 2 and "'bf16' is not one of fp32, fp16" in bf16.output
    assert not (tmp_path / "x").exists()


def test_a_missing_extra_names_the_install_command(run_dir, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name)
    )
    args = ["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "needs onnxscript" in result.output
    assert "pip install 'distill-any-depth-pipeline[onnx]'" in result.output


@pytest.mark.slow  # a second export (about 30 s); the fp32 one runs in the default suite
def test_fp16_runs_on_cpu_onnx_runtime_within_a_looser_tolerance(run_dir, tmp_path):
    import onnx

    out = export(run_dir, tmp_path / "fp16", "--precision", "fp16")
    types = {init.data_type for init in onnx.load(out / "model.onnx").graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert json.loads((out / "preprocessing.json").read_text())["format"]["precision"] == "fp16"
    assert max_relative_difference(run_dir, out) <= FP16_TOLERANCE


def write_images(folder: Path) -> list[Path]:
    """Two RGB images of sizes that are not multiples of 14, one landscape, one portrait."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for name, (h, w) in {"wide": (61, 97), "tall": (90, 47)}.items():
        path = folder / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_predict_runs_an_onnx_export_as_it_runs_the_run(run_dir, fp32_dir, tmp_path):
    images = write_images(tmp_path / "images")
    for model, out in ((run_dir, "from-run"), (fp32_dir, "from-onnx")):
        args = ["predict", str(model), *map(str, images), "--out", str(tmp_path / out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    for path in images:
        expected = np.load(tmp_path / "from-run" / f"{path.stem}.npy")
        got = np.load(tmp_path / "from-onnx" / f"{path.stem}.npy")
        assert got.shape == expected.shape and got.dtype == np.float32
        spread = float(expected.max() - expected.min())
        assert spread > 0 and float(np.abs(got - expected).max()) <= FP32_TOLERANCE * spread
        assert (tmp_path / "from-onnx" / f"{path.stem}.png").is_file()


def test_predict_on_an_onnx_export_without_onnxruntime_says_what_to_install(
    fp32_dir, tmp_path, monkeypatch
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name)
    )
    image = write_images(tmp_path / "images")[0]
    result = runner.invoke(
        app, ["predict", str(fp32_dir), str(image), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "is an ONNX export" in lines[0]
    assert "pip install onnxruntime" in lines[0]
