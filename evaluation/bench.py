"""Seconds per sample for scoring an ETH3D-size (4032×6048) sample (results in BENCHMARKS.md).

python -m evaluation.bench [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from evaluation.protocol import score


def eth3d_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 4032×6048 depth map (planes, 10% invalid as +inf) and a noisy disparity prediction."""
    rng = np.random.default_rng(seed)
    h, w = 4032, 6048
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    gt = (2.0 + 8.0 * y / h + 2.0 * np.sin(x / 500)).astype(np.float32)
    gt[rng.random((h, w)) < 0.1] = np.inf
    pred = (3.0 / np.where(np.isfinite(gt), gt, 5.0) + 0.2).astype(np.float32)
    pred *= 1 + 0.05 * rng.standard_normal((h, w)).astype(np.float32)
    return pred, gt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    pred, gt = eth3d_like()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = score(pred, gt, "eth3d", "disparity")
        times.append(time.perf_counter() - start)
    print(
        f"ETH3D-size 4032x6048, disparity prediction, median of {args.repeats}: "
        f"{statistics.median(times):.2f} s per sample (abs_rel {result['abs_rel']:.4f})"
    )


if __name__ == "__main__":
    main()
