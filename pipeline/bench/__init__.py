"""Benchmarks: one `pipeline bench NAME [ARGS...]` group over one convention.

Every benchmark is a module `<package>/bench/<name>.py` of the stage it measures, with a
`main(argv)` that parses its own flags (argparse: `pipeline bench NAME --help` lists them), prints
a Markdown table (or rows) for BENCHMARKS.md and, where it builds models or data, has a `--smoke`
mode small enough for a CPU test. `pipeline bench NAME ARGS` runs `python -m MODULE ARGS` in its
own process, so `pipeline` imports no stage. Helpers that are not benchmarks: `synthetic.py`
(shared synthetic data).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    summary: str


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark(
            "codecs",
            "pipeline.bench.codecs",
            "Bytes per pixel, error and encode/decode speed of every label codec.",
        ),
        Benchmark(
            "prepare",
            "pipeline.bench.prepare",
            "`pipeline prepare` images/s per core against a bare JPEG decode.",
        ),
        Benchmark(
            "world-render",
            "pipeline.bench.world_render",
            "Procedural world rendering: images/s per core at 1500x2250.",
        ),
        Benchmark(
            "world",
            "evaluation.bench.world",
            "The paper's ablations end to end on the procedural world (exact depth).",
        ),
        Benchmark(
            "world-metric",
            "evaluation.bench.world_metric",
            "A metric teacher distilled into metric students on the world: canonical vs raw depth.",
        ),
        Benchmark(
            "architectures",
            "evaluation.bench.architectures",
            "Depth architectures trained from scratch on the world: AbsRel and δ1 at checkpoints.",
        ),
        Benchmark(
            "labelgen",
            "labelgen.bench.labelling",
            "`labelgen run` against the bare teacher forward: `cpu` (tiny) or `gpu` (full size).",
        ),
        Benchmark(
            "losses",
            "student.bench.losses",
            "The normalized L1 loss per normalization against slower reference implementations.",
        ),
        Benchmark(
            "loader",
            "student.bench.loader",
            "The training loader's samples/s per worker against a bare image decode.",
        ),
        Benchmark(
            "train",
            "student.bench.train",
            "Training steps fed by the loader against the same batches from memory (data stall).",
        ),
        Benchmark(
            "memory",
            "student.bench.memory",
            "Training memory per student at a batch size (states, activations), computed on meta.",
        ),
        Benchmark(
            "score",
            "evaluation.bench.score",
            "Scoring (protocol, boundary F1) against prediction on ETH3D-size samples.",
        ),
        Benchmark(
            "gpu",
            "pipeline.bench.gpu",
            "Every GPU figure in one resumable folder: labelgen, training, a reduced world study.",
        ),
    )
}
"""Name -> benchmark, in the order `pipeline bench --help` lists them."""


def parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The argument parser of the benchmark in `module`: named as users call it, the first line
    of its docstring as the description, the rest (usage, what it measures) after the flags."""
    if module == "__main__":  # run as `python -m MODULE`
        module = sys.modules["__main__"].__spec__.name
    name = next(b.name for b in BENCHMARKS.values() if b.module == module)
    first, _, rest = doc.strip().partition("\n")
    return argparse.ArgumentParser(
        prog=f"pipeline bench {name}",
        description=first,
        epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
