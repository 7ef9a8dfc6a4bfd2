"""What the world study trains: its scales, its student configurations and the bar its
teachers must clear before the study draws any conclusion.

The cross-architecture pair (`dpt-base`, `dpt-both`: Table 2's Base and Both rows with a Depth
Anything teacher distilled into a DPT student) needs a DPT to start from, as the other students
start from t2. The study has no trained DPT, so it makes one the way it makes t2: `t2-dpt`, a
plain-ViT DPT with t2's ViT (`evaluation.study.dpt`), trained from random weights on the
teachers' split of exact depth with t2's recipe, steps, learning rate and seed. That costs one
more teacher training (a `tiny` or `mini` model: a few minutes at the CPU scale), once per study
directory (reused with `--teachers` when the source study has one), and shared by both rows and
every seed. It is the cheapest honest start: from scratch would be cheaper, but a random DPT head
does not learn in a student's steps (the `encoder-init` control and `both-from-scratch` show it
for Depth Anything), so both rows would be noise and their difference would say nothing about the
method; and a pre-trained DPT the Depth Anything students lack (another size, more steps) would
make the two architectures' rows incomparable. Its students distil from t1 exactly as `base` and
`both` do; only the architecture and its start differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.study.dpt import DPT_INIT

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FROM_SCRATCH = ("optim.encoder_lr_ratio=1", "loss.lambda_feat=0", "optim.warmup_steps=10")
"""Training from a random initialisation (teachers, the control): the encoder learns at the full
rate, a short warm-up, and no feature alignment (it would hold the encoder near its random start;
the paper's students start from a trained model)."""


@dataclass(frozen=True)
class Scale:
    """Sizes of one study; `pipeline bench world --scale NAME`."""

    height: int
    width: int
    tile: int
    min_region: int
    size: int
    """Student input side (and the teachers' training side)."""
    teacher_images: int
    student_images: int
    test_images: int
    teacher_steps: int
    student_steps: int
    batch: int
    seeds: int
    teacher_sizes: tuple[str, str]
    """Architectures of the two teachers, the first one the students' initialisation."""
    teacher_lr: float = 1e-3
    student_lr: float = 5e-5
    ood_shape: tuple[int, int] = (0, 0)
    """The second test split's image size (another aspect ratio and field of view: the
    out-of-distribution check); (0, 0): `height` x `width` rotated to 3:4."""

    @property
    def ood(self) -> tuple[int, int]:
        if self.ood_shape != (0, 0):
            return self.ood_shape
        side = self.height - self.height % 4
        return side, side * 4 // 3


SCALES = {
    "smoke": Scale(84, 126, 56, 70, 56, 6, 4, 4, 2, 2, 2, 1, ("tiny", "tiny")),
    "cpu": Scale(168, 252, 112, 140, 112, 160, 96, 120, 600, 150, 8, 3, ("mini", "tiny")),
    "gpu-quick": Scale(
        336, 504, 224, 280, 224, 800, 192, 120, 1500, 300, 16, 2, ("small", "mini"), 5e-4
    ),
    "gpu": Scale(840, 1260, 560, 644, 560, 512, 256, 120, 1500, 600, 8, 3, ("small", "mini")),
}
"""`gpu-quick` is the reduced study of `pipeline bench gpu` (Table 2's rows, 2 seeds, sized to a
few minutes of one H100 by estimate: not yet measured); `gpu` the paper's geometry (560 tiles,
regions from 644 px)."""

TEACHER_S_PER_STEP = 0.5
"""Wall seconds per step of a cpu-scale `mini` teacher trained beside the other on 2 cores
(BENCHMARKS.md: 1236 s for 2400 steps): the one-time cost said up front."""

SEEDS = {"teachers": 1, "students": 2, "test": 3, "ood": 4}
"""The world seed of each split: no two splits share a scene."""

TEACHER_BAR = (0.7, 0.15)
"""Teacher t1 must score AbsRel at most 0.7x the image-blind ramp's and δ1 at least the ramp's
+ 0.15 on the test split (and beat the second split's ramp) before the study draws conclusions
about the method: below that its models are noise around a prior."""


@dataclass(frozen=True)
class Student:
    """One student configuration: a config file of `configs/`, its teachers and its start."""

    name: str
    config: str
    teachers: tuple[str, ...] = ("t1",)
    init: str = "t2"
    """A teacher name (its export), `t2-dpt` (the DPT trained as t2 is, the cross-architecture
    pair's start: see the module docstring) or `scratch` (a random checkpoint). Students start
    from t2:
    a smaller model than their teacher t1 (the paper's Table 3 direction, DAv2-L into DAv2-S),
    trained on another split (the teachers'), so no student starts as its teacher's copy; one
    that did would sit at a fixed point of shared-context distillation (its labels would be its
    own output for the same view). Not encoder-only: a random DPT head does not learn in the CPU
    scale's 150 steps (the `encoder-init` control shows it)."""
    overrides: tuple[str, ...] = ()
    """More `--set key=value` settings of its `student train`."""
    data: str = "students"
    """The prepared split it distills on: `students` (labelled by t1 and t2) or `teachers` (the
    one with the `exact` column)."""


STUDENTS = (
    Student("base", "ablations/table2-base.yaml"),
    Student("shared-only", "ablations/table2-shared-only.yaml"),
    Student("local-global-only", "ablations/table2-local-global-only.yaml"),
    Student("both", "ablations/table2-both.yaml"),
    Student("shared-global", "ablations/table1-shared-global.yaml"),
    Student("shared-hybrid", "ablations/table1-shared-hybrid.yaml"),
    Student("shared-local", "ablations/table1-shared-local.yaml"),
    Student("both-two-teachers", "ablations/table2-both.yaml", ("t1", "t2")),
    Student("both-from-scratch", "ablations/table2-both.yaml", init="scratch"),
    Student("dpt-base", "ablations/table2-base.yaml", init=DPT_INIT),
    Student("dpt-both", "ablations/table2-both.yaml", init=DPT_INIT),
)
"""`shared-only` is also Table 1's "no normalization" row (one teacher: `auto` is `none`);
`dpt-base` and `dpt-both` are the cross-architecture pair (Depth Anything t1 into a DPT)."""

ROWS = {"all": STUDENTS, "table2": STUDENTS[:4], "dpt": STUDENTS[-2:]}
"""`--rows`: every configuration, only Table 2's four rows (the reduced GPU study), or only the
cross-architecture pair."""

CONTROLS = tuple(
    Student(f"{st.name}-{kind}", st.config, teachers, overrides=overrides, data=data)
    for kind, teachers, overrides, data in (
        ("encoder-init", ("t1",), ("init_weights=encoder",), "students"),
        ("exact-teacher", ("exact",), (), "teachers"),
    )
    for st in STUDENTS[:4]
)
"""`--controls`: Table 2's four rows again, (1) with only t2's encoder loaded (the DPT head drawn
at random, as the paper's headline models start, v2 appendix C.1); (2) distilled from the exact
depth (a perfect teacher) on the teachers' split, which separates the method from the teachers'
quality."""


# The metric study (`metric.py`, `pipeline bench world-metric`).
TEACHER = "m1"
"""The metric teacher, trained on the world's exact metres."""
START = "t2"
"""The students' start: a relative model trained as the world study's t2 (both arms load it with
the metric head, so they start from the same weights)."""
TEACHER_CONFIG = START_CONFIG = "ablations/table1-shared-global.yaml"
STUDENT_CONFIG = "ablations/table2-both.yaml"
MAX_DEPTH = 100
"""`student.max_depth` of every metric model there: the world is scored to 80 m."""
METRIC_LOSS = ("loss.silog_lambda=0.5", "loss.lambda_grad=0.5")
"""The metric models' terms: SILog weighting the scale more than its default (0.85) and a lighter
log-gradient term; a one-seed pilot at the CPU scale (BENCHMARKS.md) scored m1 0.540 metric
AbsRel with them against 0.704 with the defaults."""
METRIC_LR = 4.0
"""Metric students learn at this times the scale's student learning rate: their head starts
relative (turned metric at load) and must learn the scale."""
ARMS = {"canonical": (), "raw": ("student.canonical_focal=null",)}
"""The metric students: canonical depth (the method) and raw metres (the negative control)."""
METRIC_PRIORS = ("prior-median-depth", "prior-depth-map")
"""The image-blind metric priors (`metric.write_metric_prior`)."""
SPLITS = ("test", "ood")
