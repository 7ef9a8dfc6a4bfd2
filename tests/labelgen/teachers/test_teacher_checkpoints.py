"""Random checkpoints at every size: the full sizes are the published architectures (counted on
the meta device, nothing is allocated), and the writer refuses what it cannot write."""

from __future__ import annotations

import pytest
import torch

from labelgen.teachers import TEACHERS, WRITERS, write_checkpoint
from labelgen.teachers.checkpoints import (
    clip_text_encoder,
    diffusion_unet,
    diffusion_vae,
    dpt_config,
)
from pipeline.model.depth_anything import depth_anything_config


def _parameters(build) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def test_full_sizes_have_the_published_parameter_counts():
    from transformers import DepthAnythingForDepthEstimation, DPTForDepthEstimation

    def dav2(size):
        return _parameters(lambda: DepthAnythingForDepthEstimation(depth_anything_config(size)))

    assert round(dav2("small") / 1e6, 1) == 24.8  # Depth-Anything-V2-Small
    assert round(dav2("large") / 1e6, 1) == 335.3  # Depth-Anything-V2-Large
    assert round(_parameters(lambda: DPTForDepthEstimation(dpt_config("large"))) / 1e6) == 343
    assert round(_parameters(lambda: diffusion_unet("full", 4)) / 1e6, 1) == 865.9  # SD 2.1
    assert round(_parameters(lambda: diffusion_vae("full")) / 1e6, 2) == 83.65
    assert round(_parameters(lambda: clip_text_encoder("full", 49408)) / 1e6, 1) == 340.4


def test_every_adapter_has_a_tiny_and_a_full_size():
    assert sorted(WRITERS) == TEACHERS.names()  # the seven (test_teacher_spec lists them)
    assert all(sizes[0] == "tiny" and len(sizes) > 1 for _, sizes in WRITERS.values())


def test_writer_refuses_an_unknown_size(tmp_path):
    with pytest.raises(ValueError, match="has no size 'huge'; valid: tiny, large"):
        write_checkpoint("dpt", tmp_path / "x", "huge")
    assert not (tmp_path / "x").exists()
