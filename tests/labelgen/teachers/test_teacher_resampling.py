"""Teacher inputs are resampled the way the checkpoint says: the image processor's `resample`
for transformers teachers (bicubic in the DPT / Depth Anything processors), bilinear for the
diffusion teachers, recorded in the input rule. References: the transformers image processor of
the same checkpoint (PIL backend, as transformers picks without torchvision) + the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from teacher_helpers import ADAPTERS

from labelgen.teachers import load_teacher, resolve_teacher, tiny_spec
from labelgen.teachers.base import resize, resize_image
from labelgen.teachers.marigold import input_rule as marigold_rule
from labelgen.views import build_views

RESAMPLING = {
    "depth-anything-v2": "bicubic",  # the saved DPTImageProcessor says resample=3
    "dpt": "bicubic",
    "hf": "bicubic",  # the Depth Anything test model
    "genpercept": "bilinear",
    "marigold": "bilinear",
}
LEVEL = 1 / 255
# PIL resamples 8-bit images in fixed point: up to one level from the float result we compute.
PIXEL_TOL = 1.5 * LEVEL


def rgb_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random `[h, w, 3]` uint8 (edges where bicubic overshoots)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(1, h // 8), max(1, w // 8), generator=g)
    x = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear").clamp(0, 1)
    return (x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def interpolation_of(name: str, adapter: str, ckpt: Path) -> str:
    """What the column identity asks for, before any model is loaded."""
    return resolve_teacher(tiny_spec(name, adapter, ckpt)).interpolation


def as_input(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def with_resample(src: Path, dst: Path, resample: int | None) -> Path:
    """A copy of checkpoint `src` whose processor says `resample` (None: says nothing)."""
    shutil.copytree(src, dst)
    path = dst / "preprocessor_config.json"
    config = json.loads(path.read_text())
    config.pop("resample", None)
    if resample is not None:
        config["resample"] = resample
    path.write_text(json.dumps(config))
    return dst


def processor_reference(ckpt: Path, rgb: np.ndarray, size: tuple[int, int]):
    """`(pixel_values, predicted_depth [1,1,h,w])` of the transformers processor resizing `rgb`
    to exactly `size`, then the model."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor = AutoImageProcessor.from_pretrained(ckpt)
    exact = {"height": size[0], "width": size[1]}
    inputs = processor(
        images=rgb, size=exact, keep_aspect_ratio=False, ensure_multiple_of=1, return_tensors="pt"
    )
    model = AutoModelForDepthEstimation.from_pretrained(ckpt).eval()
    with torch.no_grad():
        depth = model(pixel_values=inputs.pixel_values).predicted_depth[:, None]
    return inputs.pixel_values, depth


def model_input(teacher, x: torch.Tensor) -> torch.Tensor:
    """The `pixel_values` the teacher gives its model for `x`."""
    seen = {}

    def keep(module, args, kwargs) -> None:
        seen["x"] = kwargs["pixel_values"]

    hook = teacher.model.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        teacher.predict(x)
    finally:
        hook.remove()
    return seen["x"]


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


# ---- what the input rule says --------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_input_rule_records_the_resampling_known_before_loading(adapter, tiny_teacher, tiny_dir):
    teacher = tiny_teacher(adapter)
    assert teacher.input_rule["interpolation"] == teacher.interpolation == RESAMPLING[adapter]
    # the column identity asks for it before the model is loaded: the same answer
    assert interpolation_of("tiny", adapter, tiny_dir(adapter)) == RESAMPLING[adapter]


def test_processor_without_resample_takes_its_class_default(tiny_dir, tmp_path):
    unsaid = with_resample(tiny_dir("depth-anything-v2"), tmp_path / "unsaid", None)
    assert interpolation_of("x", "depth-anything-v2", unsaid) == "bicubic"
    config = json.loads((unsaid / "preprocessor_config.json").read_text())
    config["image_processor_type"] = "ZoeDepthImageProcessor"  # whose default is bilinear
    (unsaid / "preprocessor_config.json").write_text(json.dumps(config))
    assert interpolation_of("x", "hf", unsaid) == "bilinear"


def test_no_processor_at_all_takes_the_adapter_default(tiny_dir, tmp_path):
    bare = shutil.copytree(tiny_dir("depth-anything-v2"), tmp_path / "bare")
    (bare / "preprocessor_config.json").unlink()
    assert interpolation_of("x", "depth-anything-v2", bare) == "bicubic"
    assert interpolation_of("x", "hf", bare) == "bilinear"  # transformers' default


def test_a_filter_without_equivalent_is_refused_naming_it(tiny_dir, tmp_path):
    box = with_resample(tiny_dir("depth-anything-v2"), tmp_path / "box", 4)
    with pytest.raises(ValueError, match=r"'x'.*resample=4 \(BOX\).*preprocessor_config.json"):
        interpolation_of("x", "depth-anything-v2", box)
    lanczos = with_resample(tiny_dir("depth-anything-v2"), tmp_path / "lanczos", 1)
    assert interpolation_of("x", "depth-anything-v2", lanczos) == "bicubic"


# ---- the resize itself -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(112, 140), (70, 84), (40, 301)])
def test_bicubic_resize_is_pils_bicubic_and_stays_in_range(size):
    x = as_input(rgb_image(100, 130))
    pil = np.stack(
        [
            np.asarray(Image.fromarray(c.numpy(), mode="F").resize(size[::-1], Image.BICUBIC))
            for c in x[0]
        ]
    )
    got = resize(x, size, "bicubic")
    np.testing.assert_allclose(got[0].numpy(), pil, atol=1e-5)
    if size == (112, 140):
        assert float(got.min()) < 0 or float(got.max()) > 1  # it overshoots ...
    clamped = resize_image(x, size, "bicubic")
    assert float(clamped.min()) >= 0 and float(clamped.max()) <= 1  # ... as 8-bit PIL cannot
    assert torch.equal(resize(x, size), resize(x, size, "bilinear"))  # bilinear: as before


def test_nearest_resize_is_pils_nearest():
    rgb = rgb_image(37, 53)
    got = resize(as_input(rgb), (60, 41), "nearest")
    want = np.asarray(Image.fromarray(rgb).resize((41, 60), Image.NEAREST))
    assert np.array_equal((got[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), want)


# ---- against the transformers processor + model ---------------------------------------------


@pytest.mark.parametrize("resample,interpolation", [(3, "bicubic"), (2, "bilinear")])
def test_model_input_resize_follows_the_processor(resample, interpolation, tiny_dir, tmp_path):
    """A view whose sides are not multiples of 14 (100x130 -> 112x140): the model input equals
    the processor's within one 8-bit level (PIL's fixed-point rounding), while the other filter
    is 4-5 levels off; the labels equal the processor + model output within 3% of the map's
    maximum (measured: 1.4% bicubic, 2.6% bilinear; a bicubic processor's view resized
    bilinearly, as before, is 3.6% off: the random tiny model amplifies one level a lot)."""
    ckpt = with_resample(tiny_dir("depth-anything-v2"), tmp_path / "ckpt", resample)
    teacher = load_teacher(f"x=depth-anything-v2:{ckpt}")
    assert teacher.interpolation == interpolation
    rgb = rgb_image(100, 130)
    size = teacher.rule.model_input_size(100, 130)
    assert size == (112, 140)
    pixel_values, depth = processor_reference(ckpt, rgb, size)
    std = torch.tensor(teacher.rule.std).view(1, 3, 1, 1)
    ours = model_input(teacher, as_input(rgb))
    assert float(((ours - pixel_values) * std).abs().max()) <= PIXEL_TOL
    want = resize(depth, (100, 130)).clamp_min(0)  # the output rule: bilinear back, clamp at 0
    assert rel_err(teacher.predict(as_input(rgb)), want) < 0.03
    other = "bilinear" if interpolation == "bicubic" else "bicubic"
    teacher.rule = type(teacher.rule)(**{**teacher.rule.__dict__, "interpolation": other})
    off = model_input(teacher, as_input(rgb))
    assert float(((off - pixel_values) * std).abs().max()) > 3 * LEVEL


@pytest.mark.parametrize("resample", [3, 2])
def test_full_view_equals_the_processor_resizing_the_whole_image(resample, tiny_dir, tmp_path):
    """The full view (300x420 -> short side 140) is the processor's own resize of the image:
    pixel values and labels equal the processor + model output (PIL on both sides)."""
    ckpt = with_resample(tiny_dir("depth-anything-v2"), tmp_path / "ckpt", resample)
    teacher = load_teacher(f"x=depth-anything-v2:{ckpt},full_size=140")
    rgb = rgb_image(300, 420, seed=1)
    plan_entry = {"size": [300, 420], "regions": []}
    full = build_views(rgb, plan_entry, 560, teacher.full_view_size, teacher.interpolation)["full"]
    assert tuple(full.shape[-2:]) == teacher.full_view_size(300, 420) == (140, 196)
    pixel_values, depth = processor_reference(ckpt, rgb, (140, 196))
    x = full[None].float() / 255
    torch.testing.assert_close(model_input(teacher, x), pixel_values, atol=1e-5, rtol=0)
    torch.testing.assert_close(teacher.predict(x), depth.clamp_min(0), atol=1e-5, rtol=1e-4)


# ---- Marigold: what its input rule says is what it does ---------------------------------------


def test_marigold_input_rule_says_what_happens_to_the_full_view(tiny_teacher, monkeypatch):
    teacher = tiny_teacher("marigold")
    rule = teacher.input_rule
    assert rule["resize"] == "long_side_560" and "pad" not in rule["resize"]
    assert rule["full_view"] == {
        "long_side": 560,
        "multiple": 8,
        "rounding": "nearest",
        "pad": "none",
    }
    assert rule["pad"] == "replicate_to_multiple_of_8_where_a_side_is_not_one"
    assert rule["interpolation"] == "bilinear"
    pads: list[tuple[int, int]] = []
    real = teacher.pipe.image_processor.unpad_image

    def unpad(image, padding):
        pads.append(tuple(padding))
        return real(image, padding)

    monkeypatch.setattr(teacher.pipe.image_processor, "unpad_image", unpad)
    h, w = teacher.full_view_size(300, 420)
    assert (h, w) == (400, 560)  # long side 560, sides rounded to multiples of 8
    teacher.predict(torch.rand(1, 3, h, w))
    teacher.predict(torch.rand(1, 3, 560, 560))
    teacher.predict(torch.rand(1, 3, 100, 130))  # -> 430x560: padded to 432
    assert pads == [(0, 0), (0, 0), (2, 0)]


def test_marigold_input_rule_at_other_processing_resolutions():
    assert marigold_rule(768, 8, 4, 1, 0)["full_view"]["pad"] == "none"
    native = marigold_rule(0, 8, 4, 1, 0)
    assert native["resize"] == "native" and native["full_view"]["native"] is True
    assert native["full_view"]["pad"] == native["pad"]
    odd = marigold_rule(500, 8, 4, 1, 0)["full_view"]
    assert odd["resized_again_to_long_side"] == 500 and odd["pad"] != "none"
