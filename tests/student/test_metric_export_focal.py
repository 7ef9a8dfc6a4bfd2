"""A metric student's checkpoint (`canonical_focal_px` f_c in its config.json) loaded by the
`depth-anything-v2` adapter: metric depth, de-canonicalised by the focal length of its input
(`predicted · fx_m / f_c`, `fx_m` in pixels of the model's input), the canonical camera assumed
where the focal length is unknown."""

from __future__ import annotations

import pytest
import torch
from dataset_helpers import scene_image
from metric_helpers import F_C, write_metric_student

from labelgen.teachers import load_teacher
from labelgen.teachers.base import normalize, resize, resize_image


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return load_teacher(
        f"ms=depth-anything-v2:{write_metric_student(tmp_path_factory.mktemp('ms'))}"
    )


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(scene_image(h, w, seed)).permute(2, 0, 1)[None].float() / 255.0


def test_a_metric_student_takes_the_focal_length_and_records_its_camera(student, tmp_path):
    assert student.takes_focal and student.output_kind == "metric_depth"
    assert student.input_rule["camera"] == (
        "canonical depth at f_c=300px of the model input; scaled by the given focal length"
    )
    assert student.input_rule["canonical_focal_px"] == F_C
    plain = load_teacher(f"m=depth-anything-v2:{write_metric_student(tmp_path / 'm', None)}")
    assert not plain.takes_focal and "canonical" not in plain.input_rule["camera"]


def test_depth_is_the_raw_output_times_the_model_inputs_focal_over_f_c(student):
    x = torch.cat([_image(30, 40, 0), _image(30, 40, 1)])
    depth, focal, estimated = student.predict_with_focal(x, [100.0, 250.0])
    assert focal.tolist() == [100.0, 250.0] and estimated.tolist() == [False, False]
    # by hand: the model runs at 42x42 (multiples of 14), so fx_m = f_px * 42 / 40
    with torch.no_grad():
        pixels = normalize(
            resize_image(x, (42, 42), "bicubic"), student.rule.mean, student.rule.std
        )
        raw = student.model(pixel_values=pixels).predicted_depth.unsqueeze(1)
    fx_m = torch.tensor([100.0, 250.0]).view(-1, 1, 1, 1) * 42 / 40
    torch.testing.assert_close(depth, resize(raw, (30, 40)) * fx_m / F_C)
    doubled = student.predict_with_focal(x, [200.0, 500.0])[0]
    torch.testing.assert_close(doubled, 2 * depth)


def test_an_unknown_focal_length_assumes_the_canonical_camera(student):
    x = torch.cat([_image(30, 40, 0), _image(30, 40, 1)])
    depth, focal, estimated = student.predict_with_focal(x, [None, 80.0])
    assert estimated.tolist() == [True, False]
    assert focal[0].item() == pytest.approx(F_C * 40 / 42)  # f_c in pixels of the image
    canonical = student.predict_with_focal(x, F_C * 40 / 42)[0]
    torch.testing.assert_close(depth[0], canonical[0])
    torch.testing.assert_close(student.predict(x), student.predict_with_focal(x)[0])
    torch.testing.assert_close(student.predict(x)[0], canonical[0])


def test_an_image_twice_the_size_with_twice_the_focal_length_gives_the_same_metres(student):
    """7x7 runs at 14x14 (fx_m = 2 f); the same image at 14x14 (2 f) runs at 14x14 as well."""
    small = _image(7, 7)
    large = resize_image(small, (14, 14), "bicubic")  # what the model sees of `small`
    near = student.predict_with_focal(small, 50.0)[0]
    far = student.predict_with_focal(large, 100.0)[0]
    torch.testing.assert_close(resize(far, (7, 7)), near, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(student.predict_with_focal(large, 50.0)[0], far)
