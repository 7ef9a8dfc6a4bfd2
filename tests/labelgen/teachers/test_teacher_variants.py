"""Adapter-specific behaviour: GenPercept recipe and variants, Marigold seeds and kinds, DPT
square-only and BEiT models, `hf` kinds, hub-id loading through the HF cache, tiny writers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from teacher_helpers import images

from labelgen.teachers import load_teacher, write_tiny_checkpoint
from labelgen.teachers.source import weights_sha256


def copy_ckpt(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- GenPercept ----


def test_genpercept_matches_the_published_one_step_recipe(tiny_teacher):
    teacher = tiny_teacher("genpercept")
    x = images(1, 64, 96)
    with torch.no_grad():
        vae, unet = teacher.vae, teacher.unet
        latent = vae.encode(x * 2 - 1).latent_dist.mode() * 0.18215
        v = unet(latent, 1, encoder_hidden_states=teacher.embedding).sample
        decoded = vae.decode(-v / 0.18215).sample
        expected = (decoded.mean(1, keepdim=True).clamp(-1, 1) + 1) / 2
    assert torch.allclose(teacher.predict(x), expected, atol=1e-6)


def test_genpercept_kind_option_overrides_json(tiny_dir):
    teacher = load_teacher(f"gp=genpercept:{tiny_dir('genpercept')},kind=depth")
    assert teacher.output_kind == "depth" and teacher.invariance == "affine"


def test_genpercept_without_kind_says_how_to_declare_it(tiny_dir, tmp_path):
    ckpt = copy_ckpt(tiny_dir("genpercept"), tmp_path / "gp")
    (ckpt / "genpercept.json").unlink()
    with pytest.raises(ValueError, match="kind=depth|disparity"):
        load_teacher(f"gp=genpercept:{ckpt}")


def test_genpercept_separate_vae_and_text_encoder_fallback(tiny_dir, tmp_path):
    from labelgen.teachers.checkpoints import clip_text_encoder, clip_tokenizer

    src = tiny_dir("genpercept")
    ckpt = tmp_path / "gp"
    shutil.copytree(src / "unet", ckpt / "unet")
    (ckpt / "genpercept.json").write_text(json.dumps({"kind": "depth"}))
    tokenizer = clip_tokenizer()
    tokenizer.save_pretrained(ckpt / "tokenizer")
    clip_text_encoder("tiny", len(tokenizer)).save_pretrained(ckpt / "text_encoder")
    teacher = load_teacher(f"gp=genpercept:{ckpt},vae={src / 'vae'}")
    assert teacher.embedding.shape == (1, 2, 32)  # empty prompt, not padded: BOS + EOS
    assert teacher.predict(images(1, 64, 64)).shape == (1, 1, 64, 64)
    assert teacher.output_kind == "depth"


# ---- Marigold ----


def test_marigold_seed_decides_the_noise_not_the_batch(tiny_dir):
    teacher = load_teacher(f"m=marigold:{tiny_dir('marigold')},processing_res=64,seed=3")
    x = images(2, 64, 64)
    both = teacher.predict(x)
    # same noise whatever the batch; only kernel-level float differences remain
    assert torch.allclose(both[1:], teacher.predict(x[1:]), atol=1e-4)
    other = load_teacher(f"m=marigold:{tiny_dir('marigold')},processing_res=64,seed=4")
    assert not torch.equal(both, other.predict(x))


def test_marigold_steps_ensemble_and_processing_res(tiny_dir):
    spec = f"m=marigold:{tiny_dir('marigold')},steps=2,ensemble=3,processing_res=64"
    teacher = load_teacher(spec)
    assert teacher.input_rule["steps"] == 2 and teacher.input_rule["ensemble"] == 3
    assert teacher.full_view_size(300, 450) == (40, 64)
    out = teacher.predict(images(2, 48, 80))
    assert out.shape == (2, 1, 48, 80) and torch.equal(out, teacher.predict(images(2, 48, 80)))


def test_marigold_disparity_checkpoint(tiny_dir, tmp_path):
    ckpt = copy_ckpt(tiny_dir("marigold"), tmp_path / "mg")
    index = json.loads((ckpt / "model_index.json").read_text())
    index["prediction_type"] = "disparity"
    (ckpt / "model_index.json").write_text(json.dumps(index))
    assert load_teacher(f"m=marigold:{ckpt}").output_kind == "disparity"


# ---- DPT ----


def test_dpt_rounds_to_32_and_squashes_non_square(tiny_teacher):
    teacher = tiny_teacher("dpt")
    assert teacher.rule.model_input_size(560, 560) == (576, 576)
    assert teacher.rule.model_input_size(384, 512) == (384, 384)  # plain ViT: square only
    assert teacher.full_view_size(300, 400) == (384, 512)
    assert not teacher.use_no_grad


def write_tiny_beit_dpt(out_dir: Path) -> Path:
    from transformers import BeitConfig, DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    backbone = BeitConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=384,
        patch_size=16,
        use_relative_position_bias=True,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DPTConfig(
        backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16
    )
    DPTForDepthEstimation(config).eval().save_pretrained(out_dir)
    return out_dir


def test_dpt_beit_runs_under_no_grad_and_keeps_grad_mode_usable(tmp_path):
    teacher = load_teacher(f"midas31=dpt:{write_tiny_beit_dpt(tmp_path / 'beit')}")
    assert teacher.use_no_grad and not teacher.rule.square_only
    assert teacher.rule.model_input_size(384, 512) == (384, 512)
    assert teacher.predict(images(1, 96, 128)).shape == (1, 1, 96, 128)
    # the BEiT pitfall: after an inference_mode forward, grad-mode forwards fail
    out = teacher.model(pixel_values=torch.rand(1, 3, 64, 64)).predicted_depth
    assert out.shape[-2:] == (64, 64)


# ---- hf ----


@pytest.mark.parametrize(("kind", "invariance"), [("metric_depth", "metric"), ("depth", "affine")])
def test_hf_kind_decides_invariance(tiny_dir, kind, invariance):
    teacher = load_teacher(f"x=hf:{tiny_dir('hf')},kind={kind}")
    assert teacher.output_kind == kind and teacher.invariance == invariance
    assert teacher.rule.multiple == 14 and teacher.full_view_size(518, 700)[0] == 518


def test_hf_output_is_stored_raw_and_known_families_are_clamped_at_zero(tiny_dir, monkeypatch):
    images = torch.rand(1, 3, 56, 56)
    for spec, lowest in (
        (f"x=hf:{tiny_dir('hf')},kind=depth", -0.05),
        (f"y=depth-anything-v2:{tiny_dir('depth-anything-v2')}", 0.0),
    ):
        teacher = load_teacher(spec)
        monkeypatch.setattr(teacher, "_forward", lambda x: torch.full_like(x[:, :1], -0.05))
        assert teacher.predict(images).min().item() == pytest.approx(lowest)


def test_hf_requires_kind_on_a_real_checkpoint(tiny_dir):
    with pytest.raises(ValueError, match="needs kind="):
        load_teacher(f"x=hf:{tiny_dir('hf')}")


def test_full_size_option(tiny_dir):
    teacher = load_teacher(f"x=depth-anything-v2:{tiny_dir('depth-anything-v2')},full_size=560")
    assert teacher.full_view_size(1080, 1920) == (560, 994)


# ---- hub ids through the HF cache ----


def fake_hub_cache(cache: Path, repo_id: str, ckpt: Path) -> None:
    """Lay `ckpt` out as the cached snapshot of `repo_id` (what a download leaves behind)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(ckpt, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_id_loads_from_the_hf_cache(tiny_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    fake_hub_cache(tmp_path, "tiny-org/tiny-dav2", tiny_dir("depth-anything-v2"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    teacher = load_teacher("dav2=depth-anything-v2:tiny-org/tiny-dav2")
    assert teacher.source == "tiny-org/tiny-dav2"
    assert teacher.weights_sha256 == weights_sha256(str(tiny_dir("depth-anything-v2")))
    assert teacher.rule.mean == (0.485, 0.456, 0.406)  # processor config read from the cache


# ---- tiny writers ----


def test_tiny_writer_refuses_unknown_adapter_and_non_empty_dir(tmp_path):
    with pytest.raises(ValueError, match="valid: depth-anything-v2, depth-pro, dpt"):
        write_tiny_checkpoint("midas-v9", tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        write_tiny_checkpoint("dpt", tmp_path / "full")


def test_tiny_writer_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    write_tiny_checkpoint("dpt", tmp_path / "dpt", seed=5)
    assert torch.equal(torch.rand(3), expected)
