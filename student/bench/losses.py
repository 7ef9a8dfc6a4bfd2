"""Benchmark of the normalized L1 loss: forward + backward at batch 4 × 560² on CPU.

Run `pipeline bench losses` (options: `--batch`, `--size`, `--repeats`, `--threads`,
`--clock wall|cpu`, `--dense`). Prints a Markdown table of the median and minimum time of each
normalization and of two slower implementations of `hybrid` that compute the same value:

- `REFERENCE`: `student.losses.reference`, the per-context reference the tests check against
  (loops over images and contexts, `torch.median` of each context's selected pixels);
- `REPLICATED` (with `--dense`): `replicated_hybrid`, written as widely copied HDN code is
  (per-image loop building one full-size mask per context, maps repeated once per context,
  `nanmedian` of NaN-filled copies).

and a floor: one `torch.median` of each map, forward only. Then the ratios hybrid / global
(target ≤ 3×), each slower implementation / hybrid (target ≥ 20×), and what 20× would mean in
units of the floor.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from pipeline.bench import parser as bench_parser
from student.losses import NORMALIZATIONS, normalized_l1
from student.losses._common import EPS, levels_for, prepare, range_edges
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


def _replicated_contexts(t: Tensor, valid: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Context masks `[C, B, P]` built per image, one full-size bool mask per context."""
    per_image = []
    for b in range(t.shape[0]):
        tb, vb = t[b], valid[b]
        masks = []
        for s in levels:
            edges = range_edges(tb[None], vb[None], s)[0]
            for k in range(s):
                m = vb.clone()
                if k > 0:
                    m &= tb >= edges[k - 1]
                if k < s - 1:
                    m &= tb < edges[k]
                masks.append(m)
        per_image.append(torch.stack(masks))
    return torch.stack(per_image, 1)


def _masked_shift_scale(x: Tensor, m: Tensor) -> Tensor:
    """Rows `[R, P]` normalized by the masked median (`nanmedian` of a NaN-filled copy) and MAD."""
    x_nan = x.clone()
    x_nan[~m] = float("nan")
    med = x_nan.nanmedian(-1, keepdim=True).values
    med = torch.nan_to_num(med)
    dev = (x - med).abs()
    dev[~m] = 0
    mad = dev.sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)
    return (x - med) / (mad + EPS)


def replicated_hybrid(pred: Tensor, target: Tensor, mask: Tensor | None, norm: str) -> Tensor:
    """Normalized L1 written as widely copied HDN code is (comparison column of the benchmark).

    Builds the contexts in a loop over images (one bool mask of the full map per context), repeats
    pred and target once per context (`[C * B, P]`), takes each row's masked median with
    `nanmedian` of a NaN-filled copy and its MAD, sums the dense per-context L1 maps over contexts
    and divides by each pixel's number of contexts. Differences from that code, so that it equals
    `normalized_l1`: the top range is closed, the MAD divides by the count (not count + 1), and the
    loss is a mean per image, then over images with valid pixels.
    """
    levels = levels_for(norm)
    p, t, valid = prepare(pred, target, mask)
    p, t, valid = p.flatten(1), t.flatten(1), valid.flatten(1)
    member = _replicated_contexts(t, valid, levels)
    n_ctx = member.shape[0]
    rows = member.reshape(n_ctx * p.shape[0], -1)
    norm_p = _masked_shift_scale(p.repeat(n_ctx, 1), rows)
    norm_t = _masked_shift_scale(t.repeat(n_ctx, 1), rows)
    dense = (norm_p - norm_t).abs()
    dense[~rows] = 0
    per_pixel = dense.view(n_ctx, *p.shape).sum(0) / member.sum(0).clamp(min=1)
    count = valid.sum(1)
    has = count > 0
    return (per_pixel.sum(1)[has] / count[has]).sum() / has.sum().clamp(min=1)


def time_medians(pred: Tensor, target: Tensor, repeats: int, clock: str = "wall") -> list[float]:
    """Seconds of one `torch.median` per map (pred and target of every image, no backward): the
    medians of the global level alone, a floor for any exact median/MAD normalization."""
    maps = torch.stack([pred.flatten(1), target.flatten(1)]).flatten(0, 1)
    return _seconds(lambda m: torch.median(m, dim=1), lambda: maps, repeats, clock)


FLOOR = "floor: one torch.median per map"
REFERENCE = "per-context reference (hybrid)"
REPLICATED = "replicated contexts (hybrid)"
LEGEND = {
    FLOOR: "`torch.median` of each of the 2 × batch maps (pred and target), forward only: the "
    "global level's medians, which any exact normalization computes",
    REFERENCE: "`student.losses.reference`: loop over images × 7 contexts, boolean selection "
    "and `torch.median` per context (kept by the tests as the specification)",
    REPLICATED: "`replicated_hybrid`: as widely copied HDN code, a per-image loop builds 7 "
    "full-size masks, pred and target repeated 7×, `nanmedian` per (context, image) row",
}

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_loss(
    fn: Loss, pred: Tensor, target: Tensor, norm: str, repeats: int, clock: str = "wall"
) -> list[float]:
    """Seconds of forward + backward for each repeat (after one warm-up call).

    clock `wall`: elapsed time; `cpu`: CPU time of the process (all its threads), steadier on a
    shared machine.
    """
    return _seconds(
        lambda p: fn(p, target, None, norm).backward(),
        lambda: pred.clone().requires_grad_(),
        repeats,
        clock,
    )


def _seconds(
    call: Callable[[Tensor], object], make_input: Callable[[], Tensor], repeats: int, clock: str
) -> list[float]:
    """Seconds of `call(make_input())` for each repeat after one warm-up; the input is made
    outside the timed span."""
    now = CLOCKS[clock]
    times = []
    for i in range(repeats + 1):
        x = make_input()
        start = now()
        call(x)
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
        for norm in NORMALIZATIONS
    }
    rows[FLOOR] = time_medians(pred, target, repeats, clock)
    slow = max(1, repeats // 2)
    rows[REFERENCE] = time_loss(reference_normalized_l1, pred, target, "hybrid", slow, clock)
    if dense:
        rows[REPLICATED] = time_loss(
            replicated_hybrid, pred, target, "hybrid", max(1, repeats // 3), clock
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
    lines += [""] + [f"- {name}: {text}" for name, text in LEGEND.items() if name in rows]

    def ratio(a: str, b: str, most: float | None = None, least: float | None = None) -> str:
        value = med[a] / med[b]
        met = (most is None or value <= most) and (least is None or value >= least)
        goal = f"≤ {most:g}×" if most is not None else f"≥ {least:g}×"
        verdict = "met" if met else "NOT met"
        return f"{value:.2f}× (minima: {low[a] / low[b]:.2f}×); target {goal}: {verdict}"

    lines += ["", f"- hybrid / global: {ratio('hybrid', 'global', most=3)}"]
    slower = [name for name in (REFERENCE, REPLICATED) if name in rows]
    lines += [f"- {name} / hybrid: {ratio(name, 'hybrid', least=20)}" for name in slower]
    lines += [
        f"- 20× {name} would need hybrid ≤ {med[name] / 20 * 1e3:.1f} ms = "
        f"{med[name] / 20 / med[FLOOR]:.1f}× the median floor"
        for name in slower
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__name__, __doc__)
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
