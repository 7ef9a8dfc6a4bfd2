"""Depth architectures trained from random weights on the world's exact depth: held-out AbsRel
and δ1 at checkpoints, beside the image-blind ramp (the teacher-recipe probe of the world study).

    pipeline bench architectures --train WORLD --test WORLD --arch da --steps 1200 [--every 200]
    pipeline bench architectures --smoke

WORLD: folders written by `pipeline world render`. Each architecture is a tiny configuration of
a transformers depth model of about 0.6-0.9 M parameters: `da` (Depth Anything: DINOv2 encoder,
patch 14, DPT head; the world study's `mini` teacher), `swin` (DPT on a Swin V2 backbone: MiDaS
v3.1's family, 4-pixel patches) and `glpn` (GLPN: a SegFormer encoder with overlapping
convolutional patch embeddings and a light decoder; inputs resized to multiples of 32). All are
trained on whole images at their native size with the student's global normalized L1 (the shared
-context loss), AdamW, a 50-step warm-up and polynomial decay, flips and brightness jitter, and
scored with the world's protocol (`evaluation.protocol.score`). It answers which family learns
fastest from little data on a CPU, the question the study's teachers raise; `student train`
itself trains Depth Anything students only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.protocol import score, summarize
from evaluation.study.priors import fit_horizon, load_split, ramp
from pipeline.bench import parser as bench_parser
from pipeline.model.depth_anything import IMAGENET_MEAN, IMAGENET_STD
from student.losses import normalized_l1

ARCHITECTURES = ("da", "swin", "glpn")


def build(arch: str, width: int, image_size: int) -> torch.nn.Module:
    """A randomly initialised tiny model of `arch` (see the module docstring)."""
    import transformers as T

    if arch == "da":
        backbone = T.Dinov2Config(
            hidden_size=4 * width,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=16 * width,
            patch_size=14,
            image_size=518,
            out_features=["stage1", "stage2", "stage3", "stage4"],
            reshape_hidden_states=False,
            initializer_range=0.1,
        )
        config = T.DepthAnythingConfig(
            backbone_config=backbone,
            reassemble_hidden_size=4 * width,
            initializer_range=0.1,
            neck_hidden_sizes=[width, 2 * width, 4 * width, 4 * width],
            fusion_hidden_size=2 * width,
        )
        return T.DepthAnythingForDepthEstimation(config)
    if arch == "swin":
        backbone = T.Swinv2Config(
            image_size=image_size,
            patch_size=4,
            embed_dim=width,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8],
            window_size=7,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        )
        config = T.DPTConfig(
            backbone_config=backbone,
            neck_hidden_sizes=[width, 2 * width, 4 * width, 8 * width],
            fusion_hidden_size=2 * width,
            reassemble_factors=[1, 1, 1, 1],
            head_in_index=-1,
            use_bias_in_fusion_residual=True,
            hidden_size=8 * width,
        )
        return T.DPTForDepthEstimation(config)
    if arch == "glpn":
        config = T.GLPNConfig(
            hidden_sizes=[width, 2 * width, 5 * width, 8 * width],
            depths=[2, 2, 2, 2],
            num_attention_heads=[1, 2, 5, 8],
            decoder_hidden_size=2 * width,
            max_depth=1,
        )
        return T.GLPNForDepthEstimation(config)
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def load_world(folder: Path, count: int | None = None):
    """Images [N,3,H,W] in [0,1], depth and validity [N,H,W] of a rendered world split."""
    samples = load_split(folder, count, rgb=True)
    rgb = np.stack([s.rgb for s in samples])
    depth = np.stack([s.depth for s in samples])
    valid = np.stack([s.valid_mask for s in samples])
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255, depth, valid


class Probe:
    def __init__(self, arch: str, width: int, shape: tuple[int, int]) -> None:
        multiple = 32 if arch == "glpn" else 14 if arch == "da" else 4
        self.size = tuple(max(multiple, s // multiple * multiple) for s in shape)
        self.model = build(arch, width, max(self.size))
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Disparity [B,H,W] at the input's size."""
        full = x.shape[-2:]
        if tuple(full) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True)
        out = self.model(pixel_values=(x - self.mean) / self.std).predicted_depth[:, None]
        return F.interpolate(out, size=full, mode="bilinear", align_corners=False)[:, 0]

    def score(self, rgb: torch.Tensor, depth: np.ndarray, valid: np.ndarray) -> dict:
        self.model.eval()
        with torch.no_grad():
            preds = torch.cat([self(rgb[i : i + 16]) for i in range(0, len(rgb), 16)]).numpy()
        self.model.train()
        return scores(preds, depth, valid)


def scores(preds, depth, valid) -> dict:
    rows = [
        score(p, d, "world", "disparity", v) for p, d, v in zip(preds, depth, valid, strict=True)
    ]
    med = float(np.median([r["abs_rel"] for r in rows if "abs_rel" in r]))
    s = summarize(rows)
    return {"abs_rel": s["abs_rel"], "abs_rel_median": med, "delta1": s["delta1"]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--train", type=Path, help="a rendered world split to train on")
    parser.add_argument("--test", type=Path, help="a rendered world split to score on")
    parser.add_argument("--arch", choices=ARCHITECTURES, action="append")
    parser.add_argument("--images", type=int, help="training images (default: all)")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--every", type=int, default=200, help="score every N steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=16, help="channels of the first stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny worlds, 4 steps (a CPU test)")
    args = parser.parse_args(argv)
    if args.smoke:
        import tempfile

        return _smoke(args, tempfile.mkdtemp(prefix="bench-architectures-"))
    if args.train is None or args.test is None:
        parser.error("--train and --test are required (or --smoke)")
    return probe(args)


def probe(args) -> list[dict]:
    rgb, depth, valid = load_world(args.train, args.images)
    disparity = torch.from_numpy(np.where(valid, 1.0 / np.maximum(depth, 1e-3), np.nan)).float()
    test = load_world(args.test)
    horizon = fit_horizon(args.train)
    prior = scores(np.stack([ramp(horizon, d.shape) for d in test[1]]), test[1], test[2])
    rows = []
    print(json.dumps({"prior": "ramp", "horizon": horizon, **_round(prior)}), flush=True)
    for arch in args.arch or ["da"]:
        torch.manual_seed(args.seed)
        probe = Probe(arch, args.width, tuple(rgb.shape[-2:]))
        params = sum(p.numel() for p in probe.model.parameters())
        opt = torch.optim.AdamW(probe.model.parameters(), lr=args.lr, weight_decay=0.01)
        warm, total = 50, args.steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s, w=warm, n=total: min(1.0, (s + 1) / w) * max(0.0, 1 - s / n) ** 0.9
        )
        gen, start, cpu0 = torch.Generator().manual_seed(args.seed), time.perf_counter(), _cpu()
        for step in range(1, total + 1):
            idx = torch.randint(0, len(rgb), (args.batch,), generator=gen)
            x, t = rgb[idx], disparity[idx]
            flip = (torch.rand(args.batch, generator=gen) < 0.5).view(-1, 1, 1)
            x = torch.where(flip[:, None], x.flip(-1), x)
            t = torch.where(flip, t.flip(-1), t)
            x = (x * (0.8 + 0.4 * torch.rand(args.batch, 3, 1, 1, generator=gen))).clamp(0, 1)
            loss = normalized_l1(probe(x), torch.nan_to_num(t), torch.isfinite(t), "global")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(probe.model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % args.every == 0 or step == total:
                row = {"arch": arch, "params": params, "step": step, "loss": float(loss.detach())}
                row |= {"wall_s": time.perf_counter() - start, "cpu_s": _cpu() - cpu0}
                row |= probe.score(*test)
                rows.append(row)
                print(json.dumps(_round(row)), flush=True)
    return rows


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _round(row: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def _smoke(args, root: str) -> list[dict]:
    import subprocess
    import sys

    for split, seed, count in (("train", 1, 4), ("test", 3, 2)):
        folder = Path(root) / split
        cmd = [sys.executable, "-m", "pipeline.cli", "world", "render", "--out", str(folder)]
        cmd += ["--images", str(count), "--seed", str(seed), "--split", split]
        cmd += ["--height", "56", "--width", "84", "--workers", "1"]
        subprocess.run(cmd, check=True, capture_output=True)
    args.train, args.test = Path(root) / "train", Path(root) / "test"
    args.steps, args.every, args.batch, args.width = 4, 2, 2, 8
    args.arch = args.arch or list(ARCHITECTURES)
    return probe(args)


if __name__ == "__main__":
    main()
