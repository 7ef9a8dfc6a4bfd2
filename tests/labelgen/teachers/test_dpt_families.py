"""Random checkpoints of every DPT family (plain ViT, DPT-Hybrid, MiDaS v3.1 BEiT and Swin V2):
the tiny ones are written, load through the `dpt` teacher like a downloaded checkpoint and
predict; the full sizes are the published architectures (counted on the meta device)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from teacher_helpers import images

from labelgen.teachers import WRITERS, load_teacher, write_checkpoint
from pipeline.model.dpt_families import DPT_SIZES, dpt_config

# tiny size -> (family, backbone class, processor side, keep_aspect_ratio)
TINY = {
    "tiny": ("vit", None, 384, False),
    "tiny-hybrid": ("hybrid", "BitBackbone", 64, False),
    "tiny-beit": ("beit", "BeitBackbone", 64, True),
    "tiny-swinv2": ("swinv2", "Swinv2Backbone", 64, True),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """`written(size, seed=0)`: the directory of a `dpt` checkpoint, written on first use."""
    cache: dict[tuple[str, int], Path] = {}

    def get(size: str, seed: int = 0) -> Path:
        if (size, seed) not in cache:
            out = tmp_path_factory.mktemp(f"dpt-{size}-s{seed}") / "ckpt"
            cache[size, seed] = write_checkpoint("dpt", out, size, seed=seed)
        return cache[size, seed]

    return get


@pytest.fixture(scope="module")
def teacher(written):
    cache = {}

    def get(size: str):
        if size not in cache:
            cache[size] = load_teacher(f"{size}=dpt:{written(size)}", device="cpu")
        return cache[size]

    return get


def test_the_dpt_writer_offers_every_family():
    _, sizes = WRITERS["dpt"]
    assert sizes == tuple(DPT_SIZES)
    assert {"large", "hybrid", "beit-large-512", "beit-large-384", "beit-base-384"} < set(sizes)
    assert {"swinv2-tiny-256", "swinv2-base-384", "swinv2-large-384"} < set(sizes)
    assert set(TINY) < set(sizes)


@pytest.mark.parametrize("size", TINY)
def test_tiny_family_is_small_and_loads_as_its_architecture(size, written, teacher):
    family, backbone, side, keep_aspect = TINY[size]
    folder = written(size)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 2_000_000
    model = teacher(size).model
    config = model.config
    if family == "vit":
        assert config.backbone_config is None and model.backbone is None
    elif family == "hybrid":
        assert config.is_hybrid and config.backbone_config.model_type == "bit"
        assert type(model.dpt.embeddings.backbone).__name__ == backbone
    else:
        assert not config.is_hybrid and type(model.backbone).__name__ == backbone
    proc = json.loads((folder / "preprocessor_config.json").read_text())
    assert proc["image_mean"] == proc["image_std"] == [0.5, 0.5, 0.5]
    assert proc["ensure_multiple_of"] == 32 and proc["keep_aspect_ratio"] is keep_aspect
    assert proc["size"] == {"height": side, "width": side}
    rule = teacher(size).rule
    assert rule.multiple == 32 and rule.full_short == side
    assert rule.square_only is (family == "vit")
    assert rule.fixed == ((side, side) if family == "hybrid" else None)  # no interpolation
    assert teacher(size).use_no_grad is (family == "beit")


@pytest.mark.parametrize(
    "size",
    [
        "tiny",
        "tiny-hybrid",
        "tiny-beit",
        "tiny-swinv2",
    ],
)
def test_tiny_family_predicts_a_map_of_the_input_size(size, teacher):
    out = teacher(size).predict(images(2, 96, 128))
    assert out.shape == (2, 1, 96, 128)
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert out.std() > 0 and (out[0] - out[1]).abs().mean() > 0  # depends on the image


def test_tiny_hybrid_predicts_at_its_own_size(teacher):
    out = teacher("tiny-hybrid").predict(images(2, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    assert torch.isfinite(out).all() and (out >= 0).all() and out.std() > 0


def test_non_square_inputs_run_on_beit_and_swinv2_but_not_on_vit_models(teacher):
    """What the adapter's `square_only` rests on, at the model level (no preprocessing)."""
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for size in ("tiny-beit", "tiny-swinv2"):
            assert teacher(size).model(pixel_values=x).predicted_depth.shape == (1, 64, 96)
        for size in ("tiny", "tiny-hybrid"):
            with pytest.raises((RuntimeError, ValueError)):
                teacher(size).model(pixel_values=x)


@pytest.mark.parametrize("size", TINY)
def test_same_seed_writes_the_same_bytes(size, written):
    first, again, other = written(size), written(size, seed=0), written(size, seed=1)
    twin = write_checkpoint("dpt", first.parent.parent / f"{first.parent.name}-twin", size)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in twin.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (twin / name).read_bytes(), name
    assert again == first
    weights = "model.safetensors"
    assert (first / weights).read_bytes() != (other / weights).read_bytes()


def test_full_sizes_are_the_published_architectures():
    """Parameters (meta device, nothing allocated) against the MiDaS release table, which counts
    the timm backbones' 1000-class ImageNet head that DPTForDepthEstimation does not have."""
    from transformers import DPTForDepthEstimation

    def millions(size: str) -> float:
        config = dpt_config(size)
        with torch.device("meta"):
            params = sum(p.numel() for p in DPTForDepthEstimation(config).parameters())
        backbone = config.backbone_config
        width = (
            config.hidden_size
            if backbone is None or config.is_hybrid
            else backbone.hidden_size  # BEiT width, Swin V2 last stage
        )
        return (params + 1000 * width + 1000) / 1e6

    published = {  # MiDaS v3.0 / v3.1 README, millions
        "large": 344,
        "hybrid": 123,
        "beit-large-512": 345,
        "beit-large-384": 344,
        "beit-base-384": 112,
        "swinv2-large-384": 213,
        "swinv2-base-384": 102,
        "swinv2-tiny-256": 42,
    }
    assert {size: round(millions(size)) for size in published} == published
    hybrid = dpt_config("hybrid")
    assert hybrid.backbone_config.depths == [3, 4, 9] and hybrid.backbone_featmap_shape[1] == 1024
    assert dpt_config("swinv2-tiny-256").backbone_config.window_size == 16
