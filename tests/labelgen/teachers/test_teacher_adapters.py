"""Every adapter on its tiny checkpoint, loaded through `load_teacher` (the user's path)."""

from __future__ import annotations

import json

import pytest
import torch
from teacher_helpers import EXPECTED_KIND, images

from labelgen.teachers import load_teacher, tiny_spec
from labelgen.teachers.source import weights_sha256


def test_square_views_shape_and_kind(adapter, tiny_teacher):
    teacher = tiny_teacher(adapter)
    out = teacher.predict(images(2, 560, 560))
    assert out.shape == (2, 1, 560, 560)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert teacher.output_kind == EXPECTED_KIND[adapter]
    assert teacher.invariance == "affine"
    assert teacher.adapter == adapter


def test_full_view_is_non_square_and_keeps_aspect(adapter, tiny_teacher):
    teacher = tiny_teacher(adapter)
    h, w = teacher.full_view_size(300, 451)
    assert w > h and abs(w / h - 451 / 300) < 0.1
    out = teacher.predict(images(1, h, w))
    assert out.shape == (1, 1, h, w) and out.dtype == torch.float32


def test_odd_sizes_come_back_at_input_resolution(adapter, tiny_teacher):
    out = tiny_teacher(adapter).predict(images(1, 97, 131))
    assert out.shape == (1, 1, 97, 131)


def test_predict_is_deterministic_and_image_dependent(adapter, tiny_teacher):
    teacher = tiny_teacher(adapter)
    x = images(2, 112, 112)
    a, b = teacher.predict(x), teacher.predict(x)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


def test_same_seed_same_weights_and_outputs(adapter, tiny_dir, tmp_path):
    again = tiny_dir(adapter).parent / "again"
    from labelgen.teachers import write_tiny_checkpoint

    write_tiny_checkpoint(adapter, again, seed=0)
    assert weights_sha256(str(again)) == weights_sha256(str(tiny_dir(adapter)))
    x = images(1, 64, 96)
    first = load_teacher(tiny_spec("a", adapter, tiny_dir(adapter))).predict(x)
    second = load_teacher(tiny_spec("b", adapter, again)).predict(x)
    assert torch.equal(first, second)


def test_weights_sha256_changes_with_the_weights(adapter, tiny_teacher):
    sha0 = tiny_teacher(adapter).weights_sha256
    assert len(sha0) == 64
    assert tiny_teacher(adapter, seed=1).weights_sha256 != sha0


def test_weights_sha256_covers_the_input_configuration(adapter, tiny_dir, tmp_path):
    """Editing a JSON config (e.g. the image processor's size) changes the column identity;
    re-saving the same content elsewhere does not."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir(adapter), copy)
    sha = weights_sha256(str(copy))
    assert sha == weights_sha256(str(tiny_dir(adapter)))
    config = sorted(copy.rglob("*.json"))[0]
    data = json.loads(config.read_text())
    data["_name_or_path"] = "/somewhere/else"  # where it was saved from is not content
    config.write_text(json.dumps(data, indent=4))
    assert weights_sha256(str(copy)) == sha
    data["an_input_setting"] = 700
    config.write_text(json.dumps(data))
    assert weights_sha256(str(copy)) != sha


def test_provenance_is_json(adapter, tiny_teacher):
    prov = tiny_teacher(adapter).provenance()
    assert json.loads(json.dumps(prov)) == prov
    assert {"adapter", "source", "weights_sha256", "output_kind", "invariance"} <= set(prov)
    assert {"input_rule", "precision", "options"} <= set(prov)
    assert prov["precision"] == "fp32"


def test_bf16_runs_on_cpu_and_returns_float32(adapter, tiny_teacher):
    teacher = tiny_teacher(adapter, precision="bf16")
    assert teacher.dtype == torch.bfloat16
    out = teacher.predict(images(1, 64, 64))
    assert out.dtype == torch.float32 and out.shape == (1, 1, 64, 64)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["depth-anything-v2", "dpt"])
def test_bf16_teacher_head_computes_in_float32(name, tiny_teacher):
    """The body runs in bf16; the depth head in float32, so labels are not rounded to bf16."""
    teacher = tiny_teacher(name, precision="bf16")
    dtypes = {(n.startswith("head."), p.dtype) for n, p in teacher.model.named_parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
    with torch.no_grad():
        raw = teacher._forward(images(2, 56, 56))
    assert raw.dtype == torch.float32
    assert not torch.equal(raw, raw.bfloat16().float())


def test_rejects_bad_input(tiny_teacher):
    teacher = tiny_teacher("depth-anything-v2")
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        teacher.predict(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="divide uint8 by 255"):
        teacher.predict(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    assert teacher.predict(torch.rand(0, 3, 64, 64)).shape == (0, 1, 64, 64)


def test_output_is_a_normal_tensor(tiny_teacher):
    out = tiny_teacher("depth-anything-v2").predict(images(1, 28, 28))
    assert not out.is_inference()
    out.add_(1.0)  # callers may post-process in place


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_output_follows_input_device(adapter, tiny_dir):
    teacher = load_teacher(tiny_spec("t", adapter, tiny_dir(adapter)), "cuda", "bf16")
    out = teacher.predict(images(2, 560, 560))  # CPU input, CUDA teacher
    assert out.device.type == "cpu" and out.dtype == torch.float32
    out = teacher.predict(images(2, 560, 560).cuda())
    assert out.device.type == "cuda" and out.shape == (2, 1, 560, 560)
