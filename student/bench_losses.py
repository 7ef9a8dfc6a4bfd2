"""Benchmark of the normalized L1 loss: forward + backward at batch 4 × 560² on CPU.

Run `python -m student.bench_losses` (options: `--batch`, `--size`, `--repeats`, `--threads`,
`--clock wall|cpu`, `--dense`). Prints a Markdown table of the median and minimum time of each
normalization, of the per-context reference for `hybrid` (`student.losses.reference`), optionally
of a dense implementation that replicates the maps once per context (`--dense`, the direct
approach of reference/losses.md), and the ratios hybrid / global and reference / hybrid.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from student.losses import normalized_l1
from student.losses._common import EPS, prepare, range_edges
from student.losses.reference import reference_normalized_l1

Loss = Callable[[Tensor, Tensor, Tensor | None, str], Tensor]


def scenes(batch: int, size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Depth-like target and a distorted, noisy prediction, `[B, 1, size, size]` float32."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, size)[:, None]
    x = torch.linspace(0, 1, size)[None, :]
    maps = []
    for _ in range(batch):
        a, b, c = torch.rand(3, generator=g).tolist()
        ground = 0.2 + 1.5 * y * (0.5 + a)
        wall = torch.where(x > 0.3 + 0.4 * b, 0.6 + 0.3 * c, 0.0)
        maps.append(torch.maximum(ground, wall) + 0.05 * torch.sin(40 * x) * torch.cos(30 * y))
    target = torch.stack(maps)[:, None]
    pred = 0.7 * target + 0.3 * target**2 + 0.02 * torch.randn(target.shape, generator=g)
    return pred, target


def dense_hybrid(pred: Tensor, target: Tensor, mask: Tensor | None, norm: str) -> Tensor:
    """Hybrid loss by replicating the maps once per context and `nanmedian` (for comparison)."""
    p, t, valid = prepare(pred, target, mask)
    p, t, valid = p.flatten(1), t.flatten(1), valid.flatten(1)
    members = []
    for s in (1, 2, 4):
        edges = range_edges(t, valid, s)
        for k in range(s):
            m = valid.clone()
            if k > 0:
                m &= t >= edges[:, k - 1 : k]
            if k < s - 1:
                m &= t < edges[:, k : k + 1]
            members.append(m)
    member = torch.stack(members, 1)  # [B, 7, P]
    x = torch.stack([p, t])[:, :, None].expand(-1, -1, member.shape[1], -1)
    masked = torch.where(member, x, float("nan"))
    med = masked.nanmedian(-1, keepdim=True).values
    mad = (masked - med).abs().nanmean(-1, keepdim=True)
    normed = torch.where(member, (x - torch.nan_to_num(med)) / (torch.nan_to_num(mad) + EPS), 0)
    per_pixel = (normed[0] - normed[1]).abs().sum(1) / 3
    return (per_pixel.sum(1) / valid.sum(1).clamp(min=1)).mean()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_loss(
    fn: Loss, pred: Tensor, target: Tensor, norm: str, repeats: int, clock: str = "wall"
) -> list[float]:
    """Seconds of forward + backward for each repeat (after one warm-up call).

    clock `wall`: elapsed time; `cpu`: CPU time of the process (all its threads), steadier on a
    shared machine.
    """
    now = CLOCKS[clock]
    times = []
    for i in range(repeats + 1):
        p = pred.clone().requires_grad_()
        start = now()
        fn(p, target, None, norm).backward()
        if i:
            times.append(now() - start)
    return times


def run(
    batch: int, size: int, repeats: int, dense: bool, clock: str = "wall"
) -> dict[str, list[float]]:
    """Times of every row of the table, keyed by its name."""
    pred, target = scenes(batch, size)
    rows = {
        norm: time_loss(normalized_l1, pred, target, norm, repeats, clock)
        for norm in ("global", "hybrid", "local", "none")
    }
    slow = max(1, repeats // 2)
    rows["reference (hybrid)"] = time_loss(
        reference_normalized_l1, pred, target, "hybrid", slow, clock
    )
    if dense:
        rows["dense replicated (hybrid)"] = time_loss(
            dense_hybrid, pred, target, "hybrid", max(1, repeats // 3), clock
        )
    return rows


def report(
    rows: dict[str, list[float]], batch: int, size: int, threads: int, clock: str = "wall"
) -> str:
    """Markdown table (median and min ms) and the ratios of medians (of minima in brackets)."""
    med = {name: statistics.median(t) for name, t in rows.items()}
    low = {name: min(t) for name, t in rows.items()}
    lines = [
        f"Forward + backward, batch {batch} × {size}², CPU, torch threads = {threads}, "
        f"{clock} clock",
        "",
        "| loss | median ms | min ms | repeats |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {name} | {med[name] * 1e3:.1f} | {low[name] * 1e3:.1f} | {len(t)} |"
        for name, t in rows.items()
    ]

    def ratio(a: str, b: str) -> str:
        return f"{med[a] / med[b]:.2f}× (minima: {low[a] / low[b]:.2f}×)"

    lines += [
        "",
        f"- hybrid / global: {ratio('hybrid', 'global')}; target ≤ 3×",
        f"- reference / hybrid: {ratio('reference (hybrid)', 'hybrid')}; target ≥ 20×",
    ]
    if "dense replicated (hybrid)" in rows:
        lines.append(f"- dense replicated / hybrid: {ratio('dense replicated (hybrid)', 'hybrid')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=560)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dense", action="store_true", help="also time the replicated version")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args(argv)
    for name in ("batch", "size", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be ≥ 1")
    torch.set_num_threads(args.threads)
    rows = run(args.batch, args.size, args.repeats, args.dense, args.clock)
    print(report(rows, args.batch, args.size, args.threads, args.clock))


if __name__ == "__main__":
    main()
