"""`student export` of a metric run writes a metric Depth Anything checkpoint (its config.json:
depth_estimation_type metric, max_depth, canonical_focal_px) with the metric head, refuses ONNX in
one line, and `student predict` writes metres scaled by each image's focal length (--focal-px,
else EXIF, else the canonical camera), saying which it used."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dataset_helpers import scene_image
from metric_helpers import F_C, metric_run, write_metric_student
from PIL import Image
from train_helpers import checkpoint_run, runner

from student.cli import app
from student.export import input_size
from student.export_metric import FORMULA

EXIF_IFD, FOCAL_35MM = 0x8769, 0xA405


@pytest.fixture(scope="module")
def inits(tmp_path_factory):
    """A relative tiny Depth Anything and a metric one (no canonical_focal_px)."""
    from labelgen.teachers import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("inits")
    relative = write_tiny_checkpoint("depth-anything-v2", root / "relative", seed=2)
    return relative, write_metric_student(root / "metric", None, seed=1)


@pytest.fixture(scope="module")
def exported(inits, tmp_path_factory):
    """A metric run from the relative init (f_c = F_C, max depth 20), and its hf export."""
    root = tmp_path_factory.mktemp("metric-run")
    run = metric_run(root, inits[0])
    result = runner.invoke(app, ["export", str(run), "--out", str(root / "hf")])
    assert result.exit_code == 0, result.output
    return run, root / "hf"


def test_the_export_of_a_metric_run_is_a_metric_checkpoint_with_f_c(exported):
    from transformers import DepthAnythingForDepthEstimation

    _, hf = exported
    config = json.loads((hf / "config.json").read_text())
    assert config["depth_estimation_type"] == "metric" and config["max_depth"] == 20
    assert config["canonical_focal_px"] == F_C
    model = DepthAnythingForDepthEstimation.from_pretrained(hf).eval()
    assert model.config.canonical_focal_px == F_C
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 56, 56)).predicted_depth
    # the metric head: sigmoid × max_depth, strictly inside (0, 20)
    assert (out > 0).all() and (out < 20.0).all()


def test_without_f_c_the_export_has_no_canonical_focal_and_a_relative_run_is_unchanged(
    inits, tmp_path
):
    raw = metric_run(tmp_path / "raw", inits[1], f_c=None, max_depth=10.0)
    assert runner.invoke(app, ["export", str(raw), "--out", str(tmp_path / "r")]).exit_code == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["depth_estimation_type"] == "metric" and config["max_depth"] == 10
    assert "canonical_focal_px" not in config
    relative = checkpoint_run(tmp_path / "rel", inits[0])
    assert (
        runner.invoke(app, ["export", str(relative), "--out", str(tmp_path / "p")]).exit_code == 0
    )
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert "canonical_focal_px" not in config and config.get("depth_estimation_type") != "metric"


def test_the_model_card_says_the_student_is_metric_with_f_c_the_formula_and_the_camera(
    exported, inits, tmp_path
):
    card = (exported[1] / "README.md").read_text()
    assert "It is a metric student" in card and "relative disparity" not in card
    section = card.split("## Metric depth", 1)[1].split("\n## ", 1)[0]
    assert "f_c = 300 px" in section and FORMULA in section
    assert "--focal-px F" in section and "EXIF" in section
    assert "canonical camera is assumed" in section
    raw = metric_run(tmp_path / "raw", inits[1], f_c=None)
    assert runner.invoke(app, ["export", str(raw), "--out", str(tmp_path / "r")]).exit_code == 0
    card = (tmp_path / "r" / "README.md").read_text()
    assert "blind to the camera" in card and "no `canonical_focal_px`" in card
    assert FORMULA not in card


def test_an_onnx_export_of_a_metric_run_is_refused_in_one_line(exported, tmp_path):
    run, _ = exported
    result = runner.invoke(
        app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert "metric student" in result.output and "--format hf" in result.output
    assert not (tmp_path / "o").exists()


def _photo(path, h=60, w=80, focal35=None):
    image = Image.fromarray(scene_image(h, w, 3))
    exif = Image.Exif()
    if focal35 is not None:
        exif.get_ifd(EXIF_IFD)[FOCAL_35MM] = focal35
    image.save(path, exif=exif, quality=95)
    return path


def _predict(model, images, out, *extra):
    result = runner.invoke(
        app, ["predict", str(model), *map(str, images), "--out", str(out), "--no-progress", *extra]
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("which", ["run", "hf"])
def test_predict_writes_metres_by_the_given_exif_or_canonical_focal_length(
    exported, tmp_path, which
):
    model = exported[0] if which == "run" else exported[1]
    plain = _photo(tmp_path / "plain.jpg")
    tagged = _photo(tmp_path / "tagged.jpg", focal35=50)
    output = _predict(model, [plain, tagged], tmp_path / "a")
    ratio = input_size(60, 80)[1] / 80  # W_model / W_image: 686 / 80
    assert "plain.jpg: focal length unknown: canonical camera assumed (f_c = 300 px" in output
    f_exif = 50 / 36 * 80
    assert f"tagged.jpg: focal length {f_exif:.1f} px (EXIF 50 mm (35 mm equivalent))" in output
    assert "metric depth in metres" in output
    canonical = np.load(tmp_path / "a" / "plain.npy")
    exif_metres = np.load(tmp_path / "a" / "tagged.npy")
    # the same pixels (both JPEGs of one image): metres = canonical · f_px · ratio / f_c
    np.testing.assert_allclose(exif_metres, canonical * f_exif * ratio / F_C, rtol=0.05)
    output = _predict(model, [plain, tagged], tmp_path / "b", "--focal-px", "120")
    assert output.count("focal length 120.0 px (--focal-px)") == 2
    given = np.load(tmp_path / "b" / "plain.npy")
    np.testing.assert_allclose(given, canonical * 120 * ratio / F_C, rtol=1e-5)
    doubled = _predict(model, [plain], tmp_path / "c", "--focal-px", "240")
    assert "240.0 px" in doubled
    np.testing.assert_allclose(np.load(tmp_path / "c" / "plain.npy"), 2 * given, rtol=1e-5)


def test_a_relative_model_ignores_the_focal_length_and_says_so_once(inits, tmp_path):
    plain, other = _photo(tmp_path / "plain.jpg"), _photo(tmp_path / "p2.jpg", focal35=50)
    output = _predict(inits[0], [plain, other], tmp_path / "a")
    assert "focal" not in output and "disparity" in output
    first = np.load(tmp_path / "a" / "p2.npy")
    output = _predict(inits[0], [tmp_path / "p2.jpg"], tmp_path / "b", "--focal-px", "100")
    assert output.count("--focal-px ignored") == 1 and "is relative" in output
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "p2.npy"), first)
