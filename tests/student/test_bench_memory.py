"""`pipeline bench memory`: the training memory each student needs, computed on the meta
device. The count is checked on small modules whose saved tensors are known, against the same
count on real tensors, and for the attention kernels' linear memory."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from student.bench.memory import (
    _SDPA,
    TINY,
    kernel_attention,
    main,
    saved_bytes,
    student_config,
    training_memory,
)


class PixelValues(nn.Module):
    """Calls `inner(x)` for `model(pixel_values=x)`, as the depth models are called."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.inner(pixel_values)


def test_saved_bytes_counts_each_storage_once_and_no_parameter():
    # Linear saves its input (2x4 floats; the weight is a parameter), ReLU saves its output and
    # the second Linear saves the same tensor as input: 2*4*4 + 2*8*4 bytes.
    model = PixelValues(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    assert saved_bytes(model, torch.randn(2, 4, requires_grad=True)) == 2 * 4 * 4 + 2 * 8 * 4


class Attention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, h, N, d] as q, k and v
        return nn.functional.scaled_dot_product_attention(x * 1.0, x * 2.0, x * 3.0)


def test_attention_is_counted_as_the_fused_kernels_keep_it():
    model = PixelValues(Attention())
    small, large = (torch.randn(1, 2, n, 8, requires_grad=True) for n in (64, 128))
    # q, k, v, output (4 x N x d floats per head) and a log-sum-exp per query: linear in N
    per_query = 2 * (4 * 8 * 4 + 4)
    assert saved_bytes(model, small) == 64 * per_query
    assert saved_bytes(model, large) == 128 * per_query
    assert nn.functional.scaled_dot_product_attention is _SDPA  # restored after counting
    with kernel_attention():
        assert nn.functional.scaled_dot_product_attention is not _SDPA


@pytest.mark.parametrize("name", ["dav2-tiny", "dpt-tiny", "beit-tiny", "swinv2-tiny"])
def test_the_meta_count_equals_the_count_on_real_tensors(name):
    config = student_config(name)
    meta = training_memory(config, 2, 112)
    real = training_memory(config, 2, 112, device="cpu")
    # The meta device also counts each attention output the kernels keep, which the CPU's
    # saved-tensor hook does not report: within 2%, never less.
    for key, value in meta.items():
        if key.startswith("activations") or key.startswith("total"):
            assert real[key] <= value <= 1.02 * real[key], key
        else:
            assert value == real[key], key
    assert meta["activations_fp32_gib"] > meta["activations_bf16_gib"] > 0


def test_states_and_activations_follow_the_parameters_and_the_batch():
    config = student_config("dav2-tiny")
    one, two = (training_memory(config, b, 112) for b in (2, 4))
    from transformers import DepthAnythingForDepthEstimation

    model = DepthAnythingForDepthEstimation(config)
    params = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in model.backbone.parameters())
    assert one["params_m"] == params / 1e6
    assert one["states_gib"] * 2**30 == 16 * params + 4 * encoder
    assert one["states_gib"] == two["states_gib"]
    ratio = two["activations_fp32_gib"] / one["activations_fp32_gib"]
    assert 1.9 < ratio <= 2.0  # only what does not depend on the batch (position terms) stays
    assert two["total_bf16_gib"] == pytest.approx(two["states_gib"] + two["activations_bf16_gib"])


def test_smoke_run_prints_a_row_per_tiny_student(capsys):
    main(["--smoke", "--batch", "2"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["student"] for r in rows] == list(TINY)
    assert {r["family"] for r in rows} == {"depth-anything", "dpt", "beit", "swinv2"}
    assert all(r["batch"] == 2 and r["total_bf16_gib"] > r["states_gib"] > 0 for r in rows)
