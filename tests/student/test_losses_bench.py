"""The loss benchmark runs end to end on a tiny size and its replicated variant agrees."""

from __future__ import annotations

import pytest
import torch

from student.bench import losses as bench_losses
from student.losses import normalized_l1


def test_bench_prints_table_and_ratios(capsys):
    threads = torch.get_num_threads()
    try:
        bench_losses.main(["--batch", "2", "--size", "24", "--repeats", "1", "--dense"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for name in (
        "global",
        "hybrid",
        "local",
        "none",
        bench_losses.REFERENCE,
        bench_losses.REPLICATED,
        bench_losses.FLOOR,
    ):
        assert f"| {name} |" in out
    assert "hybrid / global" in out and "the median floor" in out
    assert (
        f"{bench_losses.REFERENCE} / hybrid" in out and f"{bench_losses.REPLICATED} / hybrid" in out
    )


@pytest.mark.parametrize("norm", ["global", "hybrid", "local"])
@pytest.mark.parametrize("masked", [False, True])
def test_replicated_variant_matches(norm, masked):
    """The replicated (widely copied style) comparison computes the same loss and gradient."""
    pred, target = bench_losses.scenes(3, 32)
    mask = None
    if masked:
        mask = torch.rand(pred.shape, generator=torch.Generator().manual_seed(1)) < 0.7
        mask[1] = False
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    ours = normalized_l1(p1, target, mask, norm)
    theirs = bench_losses.replicated_hybrid(p2, target, mask, norm)
    assert torch.allclose(theirs, ours, rtol=1e-5)
    ours.backward()
    theirs.backward()
    assert torch.allclose(p2.grad, p1.grad, rtol=1e-4, atol=1e-7)
