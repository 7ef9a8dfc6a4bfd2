"""Scoring against prediction on ETH3D-size samples (4032×6048), measured in one run.

    pipeline bench score [--samples 3] [--repeats 5] [--device cpu] [--size small]

1. The protocol alone: `score` on one in-memory sample (median of `--repeats`), and what boundary
   F1 adds to it on a set with sharp edges (aligning the whole map, then `si_boundary_f1`).
2. The commands' two halves on a synthetic dataset in ETH3D's layout (24 MP JPEGs and raw
   float32 ground truth): `evaluation predict` with a randomly initialised full-size Depth
   Anything V2 student (what a user scores; no download) against `evaluation score`, both in
   one process (workers 0), seconds per sample including the file reading each half does.
The target is that scoring never costs more than prediction. Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.boundary import si_boundary_f1
from evaluation.protocol import DATASETS, aligned_map, fit, score, scoring_mask
from pipeline.bench import parser as bench_parser

ETH3D_SHAPE = (4032, 6048)


def eth3d_like(seed: int = 0, shape: tuple[int, int] = ETH3D_SHAPE) -> tuple[np.ndarray, ...]:
    """A depth map (planes, 10% invalid as +inf) and a noisy disparity prediction, float32."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    gt = (2.0 + 8.0 * y / h + 2.0 * np.sin(x / 500)).astype(np.float32)
    gt[rng.random((h, w)) < 0.1] = np.inf
    pred = (3.0 / np.where(np.isfinite(gt), gt, 5.0) + 0.2).astype(np.float32)
    pred *= 1 + 0.05 * rng.standard_normal((h, w)).astype(np.float32)
    return pred, gt


def write_eth3d_dataset(root: Path, samples: int, shape: tuple[int, int] = ETH3D_SHAPE) -> Path:
    """`samples` pairs in ETH3D's layout: `rgb/.../DSC_i.JPG` and raw float32 depth."""
    for i in range(samples):
        _, gt = eth3d_like(i, shape)
        finite = np.where(np.isfinite(gt), gt, 10.0)
        shade = (255 * (finite - finite.min()) / np.ptp(finite)).astype(np.uint8)
        rgb = np.stack([shade, 255 - shade, np.roll(shade, 97, axis=1)], axis=-1)
        name = f"DSC_{i:04d}.JPG"
        rgb_path = root / "rgb" / "bench" / "images" / "dslr_images" / name
        depth_path = root / "depth" / "bench" / "ground_truth_depth" / "dslr_images" / name
        rgb_path.parent.mkdir(parents=True, exist_ok=True)
        depth_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(rgb_path, quality=90)
        depth_path.write_bytes(gt.astype("<f4").tobytes())
    return root


def protocol_seconds(repeats: int) -> tuple[float, float, dict]:
    """Median seconds of the protocol's `score` of one ETH3D-size sample, and of what boundary
    F1 adds to it on a set with sharp edges (what `score` then also does: the fit applied to the
    whole map, `si_boundary_f1` with the mask), timed alternately in the same run; and the
    protocol's result."""
    pred, gt = eth3d_like()
    rules = DATASETS.get("eth3d")
    mask = scoring_mask(gt, rules, None)
    a, b, _ = fit(pred[mask], gt[mask], "disparity")
    gt_max = float(gt[mask].max())
    times, detail, result = [], [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = score(pred, gt, "eth3d", "disparity")
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        aligned = aligned_map(pred, gt, a, b, rules, "disparity", gt_max)
        result["boundary_f1"] = si_boundary_f1(aligned, gt, mask)
        detail.append(time.perf_counter() - start)
    return statistics.median(times), statistics.median(detail), result


def halves_seconds(workdir: Path, samples: int, device: str, size: str) -> dict[str, float]:
    """Seconds per sample of `evaluation predict` and `evaluation score` on the same data."""
    from evaluation.datasets import open_dataset
    from evaluation.models import load_predictor
    from evaluation.predict import PredictSettings, predict
    from evaluation.score import ScoreSettings, score_all
    from pipeline.model.depth_anything import write_depth_anything
    from pipeline.toolkit.launch import Launch

    ds = open_dataset(f"eth3d={write_eth3d_dataset(workdir / 'eth3d', samples)}")
    predictor = load_predictor(str(write_depth_anything(workdir / "model", size)), device)
    out = workdir / "eval"
    start = time.perf_counter()
    predict(predictor, [ds], out, PredictSettings(), Launch(device=device, workers=0))
    predict_s = (time.perf_counter() - start) / samples
    start = time.perf_counter()
    score_all(out, [ds], ScoreSettings(), Launch(workers=0))
    score_s = (time.perf_counter() - start) / samples
    return {"predict": predict_s, "score": score_s}


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=3, help="0 = the protocol alone")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="small", help="student size: tiny, small or large")
    args = parser.parse_args(argv)
    seconds, detail, result = protocol_seconds(args.repeats)
    print(
        f"protocol: ETH3D-size 4032x6048, disparity prediction, median of {args.repeats}: "
        f"{seconds:.2f} s per sample (abs_rel {result['abs_rel']:.4f}); boundary F1 adds "
        f"{detail:.2f} s = {detail / seconds:.2f}x the protocol (bf1 {result['boundary_f1']:.3f})"
    )
    if args.samples < 1:
        return
    with tempfile.TemporaryDirectory(prefix="evaluation-bench-") as tmp:
        halves = halves_seconds(Path(tmp), args.samples, args.device, args.size)
    print(
        f"commands: {args.samples} samples, DAv2-{args.size} on {args.device}: "
        f"predict {halves['predict']:.2f} s/sample, score {halves['score']:.2f} s/sample, "
        f"score/predict = {halves['score'] / halves['predict']:.2f}"
    )


if __name__ == "__main__":
    main()
