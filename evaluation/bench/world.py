"""The paper's ablations end to end on the procedural world (exact depth), beside priors.

The steps are listed in `evaluation.study.run`.

    pipeline bench world --out DIR [--scale cpu|gpu-quick|gpu|smoke] [--jobs N] [--until teachers]
        [--teachers STUDY_DIR] [--scale-set FIELD=VALUE ...] [--teacher-set KEY=VALUE ...]
        [--rows all|table2|dpt] [--seeds N] [--controls]

Exit status 0 when teacher t1 clears the bar over the image-blind prior
(`evaluation.study.plan.TEACHER_BAR`), 3 when it does not: the report then draws no conclusion
about the method.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import replace
from pathlib import Path

from evaluation.study.plan import CONFIGS, ROWS, SCALES, Scale
from evaluation.study.run import Study
from pipeline.bench import parser as bench_parser
from pipeline.toolkit.cpus import usable_cpus

NO_CONCLUSION = 3
"""Exit status of a study whose teachers do not beat the prior by the bar."""


def with_changes(scale: Scale, changes: list[str], parser: argparse.ArgumentParser) -> Scale:
    """`scale` with `FIELD=VALUE` changes (ints, floats, or comma-separated teacher sizes)."""
    values = {}
    for change in changes:
        name, _, text = change.partition("=")
        current = getattr(scale, name, None)
        if current is None or not text:
            fields = ", ".join(f.name for f in dataclasses.fields(Scale))
            parser.error(f"--scale-set {change!r}: FIELD=VALUE with FIELD one of {fields}")
        try:
            values[name] = (
                tuple(type(current[0])(x) for x in text.split(","))
                if isinstance(current, tuple)
                else type(current)(text)
            )
        except ValueError:
            parser.error(f"--scale-set {change!r}: {text!r} is not a {type(current).__name__}")
    return replace(scale, **values)


def study_arguments(parser: argparse.ArgumentParser, seeds: str, scale_example: str) -> None:
    """The flags every world study takes: --out, --scale, --jobs, --seeds, --scale-set."""
    parser.add_argument("--out", type=Path, required=True, help="study directory (resumable)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--jobs", type=int, default=usable_cpus(), help="steps run at a time")
    parser.add_argument("--seeds", type=int, help=f"seeds per {seeds}")
    parser.add_argument(
        "--scale-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"change one size of the scale, e.g. {scale_example}",
    )


def study_scale(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Scale:
    """The scale `--scale`, `--scale-set` and `--seeds` name."""
    scale = with_changes(SCALES[args.scale], args.scale_set, parser)
    return replace(scale, seeds=args.seeds) if args.seeds else scale


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__name__, __doc__)
    example = "teacher_steps=3000 or teacher_images=1600 (a recipe probe: with --until teachers)"
    study_arguments(parser, "student configuration", example)
    parser.add_argument("--configs", type=Path, default=CONFIGS, help="the configs/ folder")
    parser.add_argument(
        "--controls",
        action="store_true",
        help="also Table 2's rows with an encoder-only init and with the exact depth as teacher",
    )
    parser.add_argument(
        "--rows", choices=sorted(ROWS), default="all", help="the student configurations trained"
    )
    parser.add_argument(
        "--until",
        choices=("teachers", "report"),
        default="report",
        help="`teachers`: stop once the teachers are trained, exported and scored beside the "
        "priors (the same command without it goes on from there)",
    )
    parser.add_argument(
        "--teachers",
        type=Path,
        help="a study directory whose teachers are trained (`--until teachers`): its exported "
        "t1 and t2 are copied and not trained again",
    )
    parser.add_argument(
        "--teacher-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more `student train --set` of the teachers, e.g. data.mode=baseline",
    )
    args = parser.parse_args(argv)
    scale = study_scale(args, parser)
    jobs = max(1, args.jobs)
    study = Study(args.out, scale, jobs, args.configs, args.controls, args.rows, args.teachers)
    study.teacher_overrides = tuple(args.teacher_set)
    _report, passed = study(args.until)
    return 0 if passed else NO_CONCLUSION


if __name__ == "__main__":
    sys.exit(main())
