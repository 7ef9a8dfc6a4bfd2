"""A metric teacher distilled into metric students through crops and tiles on the world.

The steps are listed in `evaluation.study.metric`.

    pipeline bench world-metric --out DIR [--scale cpu|gpu-quick|gpu|smoke] [--jobs N]
        [--seeds N] [--teachers METRIC_STUDY_DIR] [--scale-set FIELD=VALUE ...] [--until teachers]

Exit status 0 when the canonical students beat the image-blind metric priors with
`--alignment none` on the test split, 3 when they do not: the report then draws no conclusion
about canonicalisation.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from evaluation.bench.world import NO_CONCLUSION, with_changes
from evaluation.study.metric import MetricStudy
from evaluation.study.plan import SCALES
from pipeline.bench import parser as bench_parser
from pipeline.toolkit.cpus import usable_cpus


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--out", type=Path, required=True, help="study directory (resumable)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--jobs", type=int, default=usable_cpus(), help="steps run at a time")
    parser.add_argument("--seeds", type=int, help="seeds per student arm")
    parser.add_argument(
        "--until",
        choices=("teachers", "report"),
        default="report",
        help="`teachers`: stop once the metric teacher is trained and scored beside the priors",
    )
    parser.add_argument(
        "--teachers",
        type=Path,
        help="a metric study directory whose m1 and t2 are trained: copied, not trained again",
    )
    parser.add_argument(
        "--scale-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change one size of the scale, e.g. student_steps=300",
    )
    args = parser.parse_args(argv)
    scale = with_changes(SCALES[args.scale], args.scale_set, parser)
    if args.seeds:
        scale = replace(scale, seeds=args.seeds)
    study = MetricStudy(args.out, scale, max(1, args.jobs), args.teachers)
    _report, beats = study(args.until)
    return 0 if beats else NO_CONCLUSION


if __name__ == "__main__":
    sys.exit(main())
