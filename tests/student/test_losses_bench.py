"""The loss benchmark runs end to end on a tiny size and its dense variant agrees."""

from __future__ import annotations

import torch

from student import bench_losses
from student.losses import normalized_l1


def test_bench_prints_table_and_ratios(capsys):
    threads = torch.get_num_threads()
    try:
        bench_losses.main(["--batch", "2", "--size", "24", "--repeats", "1", "--dense"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for name in ("| global |", "| hybrid |", "| local |", "| none |", "| reference (hybrid) |"):
        assert name in out
    assert "hybrid / global" in out and "reference / hybrid" in out


def test_dense_variant_matches():
    pred, target = bench_losses.scenes(2, 32)
    dense = bench_losses.dense_hybrid(pred, target, None, "hybrid")
    assert torch.allclose(dense, normalized_l1(pred, target, None, "hybrid"), rtol=1e-5)
