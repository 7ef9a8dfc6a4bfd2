"""Training memory of each student at a batch size, computed on the meta device (no GPU, no
weights, a few seconds): what the README's student-family table quotes until a GPU measures it.

    pipeline bench memory                              # every full-size student, batch 8
    pipeline bench memory --student dpt-large --batch 16
    pipeline bench memory --smoke                      # the tiny students (a CPU test)

Per student (`student.bench.train.STUDENTS`), at the side its family computes at for 560 views:
- states: fp32 weights, gradients and AdamW's two moments (16 bytes per parameter) plus the
  frozen encoder copy of the feature term (4 bytes per encoder parameter);
- activations: the bytes the forward of one batch saves for the backward (the trainer runs one
  forward per step), counted by `saved_tensors_hooks` on a meta-device model, parameters left
  out. Attention is counted as a GPU runs it: PyTorch's flash / memory-efficient kernels keep
  q, k, v, the output and a log-sum-exp, not the N x N matrix (the meta device would take the
  math path). Swin V2 attends in windows with its own (eager) code, counted as it is.
  `bf16`: the model cast to bf16, plus autocast's bf16 copy of every weight; autocast keeps
  normalization outputs and the residual stream in fp32, so the true figure lies between the
  bf16 and the fp32 columns. `fp32`: `precision=fp32`.
- total: states + bf16 activations. A step's peak adds the frozen encoder's forward (one layer
  at a time, no graph) and allocator slack; `pipeline bench train` measures the real peak
  (`peak_gib`) on a GPU.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.bench import parser as bench_parser
from pipeline.model.depth_anything import depth_anything_config
from pipeline.model.dpt_families import dpt_config
from student.bench.train import STUDENTS, TINY, add_student_option
from student.families import family_of

GIB = 2**30
VIEW = 560
TINY_VIEW = 112


def student_config(name: str) -> Any:
    """The transformers config of the `--student` named `name` (`STUDENTS` or `TINY`)."""
    writer, size = {**STUDENTS, **TINY}[name]
    return depth_anything_config(size) if writer == "depth-anything" else dpt_config(size)


class _KernelAttention(torch.autograd.Function):
    """`scaled_dot_product_attention` saving what the fused GPU kernels save (q, k, v, the
    output, a float32 log-sum-exp per query and the mask when given), for counting only."""

    @staticmethod
    def forward(ctx, q, k, v, mask, options):  # noqa: D102
        with torch.no_grad():
            out = _SDPA(q, k, v, attn_mask=mask, **options)
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse, *([] if mask is None else [mask]))
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        raise NotImplementedError("counting only")


_SDPA = F.scaled_dot_product_attention


@contextlib.contextmanager
def kernel_attention() -> Iterator[None]:
    """Within it, `F.scaled_dot_product_attention` saves what the fused kernels save."""

    def attention(q, k, v, attn_mask=None, **options):
        return _KernelAttention.apply(q, k, v, attn_mask, options)

    F.scaled_dot_product_attention = attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = _SDPA


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages `model(pixel_values=x)` saves for its backward, the
    model's parameters left out."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    storages: dict[int, int] = {}
    kept: list[torch.Tensor] = []  # alive while counting, so no storage address is reused

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in params:
            storages[storage._cdata] = max(storages.get(storage._cdata, 0), storage.nbytes())
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), kernel_attention():
        model(pixel_values=x)
    return sum(storages.values())


def training_memory(config: Any, batch: int, view: int = VIEW, device: str = "meta") -> dict:
    """The memory row of a student of `config` at `batch` views of `view` px (module docstring);
    `device="cpu"` runs the same count on real tensors (for tests of small models)."""
    family = family_of(config)
    side = family.side(config, view)
    with torch.device(device):
        model = family.model_class()(config).train()
        x = torch.randn(batch, 3, side, side)
    params = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in family.encoder(model).parameters())
    fp32 = saved_bytes(model, x)
    bf16 = saved_bytes(model.to(torch.bfloat16), x.to(torch.bfloat16)) + 2 * params
    states = 16 * params + 4 * encoder
    return {
        "family": family.name,
        "side": side,
        "batch": batch,
        "params_m": params / 1e6,
        "states_gib": states / GIB,
        "activations_bf16_gib": bf16 / GIB,
        "activations_fp32_gib": fp32 / GIB,
        "total_bf16_gib": (states + bf16) / GIB,
    }


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__name__, __doc__)
    add_student_option(parser, "default: every full-size student (every tiny one with --smoke)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="the tiny students at 112 px views")
    args = parser.parse_args(argv)
    names = args.student or list(TINY if args.smoke else STUDENTS)
    rows = []
    for name in dict.fromkeys(names):
        view = TINY_VIEW if name in TINY else VIEW
        rows.append({"student": name, **training_memory(student_config(name), args.batch, view)})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
