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
from pathlib import Path

from evaluation.bench.world import NO_CONCLUSION, study_arguments, study_scale
from evaluation.study.metric import MetricStudy
from pipeline.bench import parser as bench_parser


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__name__, __doc__)
    study_arguments(parser, "student arm", "student_steps=600")
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
    args = parser.parse_args(argv)
    study = MetricStudy(args.out, study_scale(args, parser), max(1, args.jobs), args.teachers)
    _report, beats = study(args.until)
    return 0 if beats else NO_CONCLUSION


if __name__ == "__main__":
    sys.exit(main())
