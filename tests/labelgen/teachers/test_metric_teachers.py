"""Metric teachers: Depth Anything V2 metric (recognised from config.json), ZoeDepth and Depth Pro
label a prepared dataset through `labelgen run` as metric depth, record how they use the camera,
and predict what transformers' own model and post-processing give on the same pixels; Depth Pro
scales its depth by the focal length it is given."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dataset_helpers import scene_image
from PIL import Image
from typer.testing import CliRunner

from labelgen.cli import app
from labelgen.teachers import load_teacher, write_checkpoint
from labelgen.teachers.depth_pro import CAMERA_FOCAL
from labelgen.teachers.hf import CAMERA_UNUSED
from pipeline.dataset import load_dataset
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.labels.manifest import ColumnManifest
from pipeline.labels.store import open_reader

# adapter, size, the camera rule its column records
METRIC = {
    "dav2-metric-indoor": ("depth-anything-v2", "tiny-metric-indoor", CAMERA_UNUSED),
    "dav2-metric-outdoor": ("depth-anything-v2", "tiny-metric-outdoor", CAMERA_UNUSED),
    "zoedepth": ("zoedepth", "tiny", CAMERA_UNUSED),
    "depth-pro": ("depth-pro", "tiny", CAMERA_FOCAL),
}


@pytest.fixture(scope="module")
def metric_dir(tmp_path_factory):
    """`metric_dir(name)`: the tiny checkpoint of `METRIC[name]`, written once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            adapter, size, _ = METRIC[name]
            cache[name] = write_checkpoint(adapter, tmp_path_factory.mktemp(name) / "ckpt", size)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """Two small photos (one region each, one tile per region), one shard."""
    root = tmp_path_factory.mktemp("metric-ds")
    (root / "photos").mkdir()
    for i, (h, w) in enumerate([(300, 420), (260, 250)]):
        Image.fromarray(scene_image(h, w, i)).save(root / "photos" / f"p{i}.png")
    settings = PrepareSettings(shard_size=2, regions=1)
    prepare([str(root / "photos")], root / "ds", settings, progress=False, workers=1)
    return root / "ds"


def _pixels(h: int, w: int, seed: int = 0) -> tuple[Image.Image, torch.Tensor]:
    rgb = scene_image(h, w, seed)
    return Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.parametrize("name", list(METRIC))
def test_metric_teacher_labels_a_dataset_through_labelgen_run(
    name, metric_dir, small_dataset, tmp_path
):
    import shutil

    ds = shutil.copytree(small_dataset, tmp_path / "ds")
    adapter, _, camera = METRIC[name]
    spec = f"{name}={adapter}:{metric_dir(name)}" + (",full_size=140" if "dav2" in name else "")
    args = ["run", "--dataset", str(ds), "--teacher", spec, "--batch-size", "4"]
    result = CliRunner().invoke(app, [*args, "--workers", "0", "--no-progress"])
    assert result.exit_code == 0, result.output

    manifest = ColumnManifest.load(ds / "labels" / name / "manifest.json")
    assert (manifest.output_kind, manifest.invariance) == ("metric_depth", "metric")
    assert manifest.input_rule["camera"] == camera
    if adapter == "depth-anything-v2":
        assert manifest.input_rule["max_depth"] == (20.0 if "indoor" in name else 80.0)
    shard = load_dataset(ds).shards[0]
    n_maps = 0
    path = next((ds / "labels" / name).glob(f"{shard.name}.*"))
    with open_reader(path, expected_plan_sha256=shard.plan_sha256) as reader:
        assert len(reader.keys) == 2
        for key in reader.keys:
            assert reader.record(key)["kind"] == "metric_depth"
            for view in reader.names(key):
                depth = reader.read(key, view)
                assert np.isfinite(depth).all() and (depth > 0).all(), (key, view)
                n_maps += 1
    assert n_maps == 2 * 3  # full, region context view, one tile


def test_a_relative_depth_anything_stays_disparity(tiny_dir):
    teacher = load_teacher(f"rel=depth-anything-v2:{tiny_dir('depth-anything-v2')}")
    assert teacher.output_kind == "disparity" and "max_depth" not in teacher.input_rule


def test_depth_anything_metric_equals_the_transformers_model(metric_dir):
    from transformers import DepthAnythingForDepthEstimation

    teacher = load_teacher(f"m=depth-anything-v2:{metric_dir('dav2-metric-outdoor')}")
    model = DepthAnythingForDepthEstimation.from_pretrained(metric_dir("dav2-metric-outdoor"))
    _, x = _pixels(70, 84)  # multiples of 14: no resize on either side
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.eval()(pixel_values=(x - mean) / std).predicted_depth[:, None]
    assert float(expected.min()) > 0 and float(expected.max()) < 80.0  # sigmoid x max_depth
    torch.testing.assert_close(teacher.predict(x), expected, rtol=1e-5, atol=1e-5)


def _zoe_post_process(depth: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """`ZoeDepthImageProcessor.post_process_depth_estimation(outputs, source_sizes=[(h, w)])`:
    torchvision's bicubic resize without antialias (torch's bicubic) to the padded size, then
    the padding `int(sqrt(side / 2) * 3)` cut off (the method itself needs torchvision)."""
    ph, pw = int(math.sqrt(h / 2) * 3), int(math.sqrt(w / 2) * 3)
    depth = F.interpolate(depth[:, None], size=(h + 2 * ph, w + 2 * pw), mode="bicubic")
    return depth[..., ph : ph + h, pw : pw + w]


def test_zoedepth_equals_the_transformers_processor_and_model(metric_dir):
    from transformers import AutoImageProcessor, ZoeDepthForDepthEstimation

    teacher = load_teacher(f"zoe=zoedepth:{metric_dir('zoedepth')}")
    processor = AutoImageProcessor.from_pretrained(metric_dir("zoedepth"))
    model = ZoeDepthForDepthEstimation.from_pretrained(metric_dir("zoedepth")).eval()
    image, x = _pixels(70, 90)
    pixel_values = processor(images=image, return_tensors="pt").pixel_values
    with torch.no_grad():
        expected = _zoe_post_process(model(pixel_values=pixel_values).predicted_depth, 70, 90)
    got = teacher.predict(x)
    assert got.shape == (1, 1, 70, 90)
    assert float(expected.std()) > 1e-6  # the map varies: a misplaced pixel would show
    torch.testing.assert_close(got, expected, rtol=2e-6, atol=2e-7)


def test_zoedepth_with_two_bin_heads_labels_each_image_alone(metric_dir):
    teacher = load_teacher(f"zoe=zoedepth:{metric_dir('zoedepth')}")
    assert len(teacher.model.config.bin_configurations) == 2  # nyu-kitti: a vote per forward
    batch = torch.cat([_pixels(64, 80, seed)[1] for seed in range(3)])
    alone = torch.cat([teacher.predict(batch[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(teacher.predict(batch), alone)


def _depth_pro_reference(model, x: torch.Tensor, side: int, f_px: float | None) -> torch.Tensor:
    """transformers' Depth Pro on `x`: the processor's input (normalize, bilinear resize without
    antialias to side x side) and `post_process_depth_estimation` with the image's target size,
    the field of view set to the one `f_px` gives when it is known. That method needs
    torchvision: where it is installed it is called, else its formula is applied here."""
    h, w = x.shape[-2:]
    pixels = F.interpolate((x - 0.5) / 0.5, size=(side, side), mode="bilinear", antialias=False)
    with torch.no_grad():
        out = model(pixel_values=pixels)
    if f_px is not None:
        out.field_of_view = torch.rad2deg(2 * torch.atan(torch.tensor([0.5 * w / f_px])))
    try:
        from transformers.models.depth_pro.image_processing_depth_pro import (
            DepthProImageProcessor,
        )

        processor = DepthProImageProcessor(size={"height": side, "width": side})
        result = processor.post_process_depth_estimation(out, target_sizes=[(h, w)])
        return result[0]["predicted_depth"][None, None]
    except ImportError:
        fov = out.field_of_view[0]
        focal = 0.5 * w / torch.tan(0.5 * torch.deg2rad(fov))
        inverse = (out.predicted_depth[0] * w / focal)[None, None]
        inverse = F.interpolate(inverse, size=(h, w), mode="bilinear")
        return 1.0 / torch.clamp(inverse, min=1e-4, max=1e4)


@pytest.mark.parametrize("f_px", [None, 80.0])
def test_depth_pro_equals_the_transformers_model_and_post_processing(metric_dir, f_px):
    from transformers import DepthProForDepthEstimation

    teacher = load_teacher(f"dp=depth-pro:{metric_dir('depth-pro')}")
    model = DepthProForDepthEstimation.from_pretrained(metric_dir("depth-pro")).eval()
    _, x = _pixels(150, 200)  # larger than the model's input (128): antialiasing would show
    expected = _depth_pro_reference(model, x, teacher.rule.fixed[0], f_px)
    torch.testing.assert_close(teacher.predict(x, f_px=f_px), expected, rtol=1e-5, atol=1e-6)


def test_depth_pro_uses_the_given_focal_length_and_scales_with_it(metric_dir):
    teacher = load_teacher(f"dp=depth-pro:{metric_dir('depth-pro')}")
    x = torch.cat([_pixels(72, 100, seed)[1] for seed in range(2)])
    estimated_depth, focal, estimated = teacher.predict_with_focal(x)
    assert estimated.tolist() == [True, True]
    with torch.no_grad():
        pixels = F.interpolate((x - 0.5) / 0.5, size=teacher.rule.fixed, mode="bilinear")
        fov = teacher.model(pixel_values=pixels).field_of_view.double()
    torch.testing.assert_close(
        focal, 0.5 * 100 / torch.tan(torch.deg2rad(fov) / 2), rtol=1e-6, atol=0
    )

    given = teacher.predict(x, f_px=[60.0, None])  # the second image's focal length unknown
    assert not torch.allclose(given[0], estimated_depth[0], rtol=1e-2)
    torch.testing.assert_close(given[1], estimated_depth[1])
    # depth = f_px / (W · canonical inverse): doubling f_px doubles the depth
    doubled = teacher.predict(x, f_px=120.0)
    torch.testing.assert_close(doubled[0], 2 * given[0], rtol=1e-5, atol=0)
    _, used, flags = teacher.predict_with_focal(x, f_px=[60.0, None])
    assert flags.tolist() == [False, True] and used[0] == 60.0 and used[1] == focal[1]


@pytest.mark.parametrize("bad", [[60.0], [0.0, 1.0], [float("inf"), None]])
def test_depth_pro_refuses_focal_lengths_that_are_not_one_positive_value_per_image(metric_dir, bad):
    teacher = load_teacher(f"dp=depth-pro:{metric_dir('depth-pro')}")
    with pytest.raises(ValueError, match="f_px"):
        teacher.predict(torch.rand(2, 3, 40, 40), f_px=bad)


@pytest.mark.parametrize(
    ("adapter", "size"), [("depth-pro", "tiny"), ("depth-anything-v2", "tiny-metric-indoor")]
)
def test_tiny_checkpoint_command_writes_a_metric_teacher(adapter, size, tmp_path):
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(app, ["tiny-checkpoint", adapter, str(out), "--size", size])
    assert result.exit_code == 0, result.output
    spec = result.output.split("use it as: --teacher ", 1)[1].strip()
    assert load_teacher(spec).output_kind == "metric_depth"


def test_full_metric_sizes_have_the_published_parameter_counts():
    from transformers import DepthProForDepthEstimation, ZoeDepthForDepthEstimation

    from pipeline.model.metric import depth_pro_config, zoedepth_config

    with torch.device("meta"):
        zoe = sum(
            p.numel() for p in ZoeDepthForDepthEstimation(zoedepth_config("full")).parameters()
        )
        pro = sum(
            p.numel() for p in DepthProForDepthEstimation(depth_pro_config("full")).parameters()
        )
    assert round(zoe / 1e6) == 345  # Intel/zoedepth-nyu-kitti
    assert round(pro / 1e6) == 952  # apple/DepthPro-hf


def test_the_generic_adapter_refuses_depth_pro_naming_its_adapter(metric_dir):
    with pytest.raises(ValueError, match=r"inverse depth .*use dp=depth-pro:"):
        load_teacher(f"dp=hf:{metric_dir('depth-pro')},kind=metric_depth")
