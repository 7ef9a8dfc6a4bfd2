"""The paper's ablations end to end on the procedural world, where depth is known exactly.

    pipeline bench world --out DIR [--scale cpu|gpu|smoke] [--jobs N]

Every step is a command a user runs (printed as it goes, each in its own process, so `pipeline`
imports no stage); only the labels' origin is special to the world:

1. `pipeline world render`: a split to train the teachers on, a split to distill on, a test split;
2. `pipeline prepare` of both training splits, with the scale's plan geometry;
3. `pipeline world labels`: the exact depth of every planned view of the teachers' split;
4. two real teachers: `student train` on that exact column from a random initialisation
   (`labelgen tiny-checkpoint --size`), different in size (`mini` and `tiny` at the CPU scale),
   then `student export` (a model directory, as a user's checkpoint);
5. `labelgen run --teacher NAME=depth-anything-v2:EXPORT` with both on the distillation split;
6. the students, initialised from the teacher they distill (its export as `--init`), as the
   paper's are: Table 2 (base, shared-context only, local-global only, both), Table 1's
   normalizations of the shared-context term, both teachers at once, and one student trained
   from scratch as a control; each with several seeds;
7. `evaluation run` of every teacher and student on the test split (AbsRel, δ1, boundary F1);
8. the report (`world_report.py`): mean ± standard deviation over seeds beside the paper's numbers,
   the `evaluation report` table, and one figure per configuration.

Steps whose outputs are complete are skipped, so an interrupted study resumes. Independent
steps run `--jobs` at a time, each with `cpus // jobs` torch threads (and OpenMP threads that
sleep while they wait, unless `OMP_WAIT_POLICY` says otherwise: spinning ones cost several times
the CPU on a shared machine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipeline.bench import parser as bench_parser
from pipeline.bench.world_report import write_report

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


SCALES = {
    "smoke": Scale(84, 126, 56, 70, 56, 6, 4, 2, 2, 2, 2, 1, ("tiny", "tiny")),
    "cpu": Scale(168, 252, 112, 140, 112, 160, 96, 48, 600, 150, 8, 3, ("mini", "tiny")),
    "gpu": Scale(840, 1260, 560, 644, 560, 512, 256, 64, 1500, 600, 8, 3, ("small", "mini")),
}


@dataclass(frozen=True)
class Student:
    """One student configuration: a config file of `configs/`, its teachers and its start."""

    name: str
    config: str
    teachers: tuple[str, ...] = ("t1",)
    init: str = "t1"
    """A teacher name (its export), or `scratch` (a random checkpoint)."""
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
)
"""`shared-only` is also Table 1's "no normalization" row (one teacher: `auto` is `none`)."""

CONTROLS = tuple(
    Student(f"{st.name}-{kind}", st.config, teachers, overrides=overrides, data=data)
    for kind, teachers, overrides, data in (
        ("encoder-init", ("t1",), ("init_weights=encoder",), "students"),
        ("exact-teacher", ("exact",), (), "teachers"),
    )
    for st in STUDENTS[:4]
)
"""`--controls`: Table 2's four rows again, (1) with only t1's encoder loaded (the DPT head drawn
at random, as the paper's headline models start), so a student does not start as its teacher's
exact copy; (2) distilled from the exact depth (a perfect teacher) on the teachers' split, which
separates the method from the teachers' quality."""


class Study:
    def __init__(
        self, out: Path, scale: Scale, jobs: int, configs: Path = CONFIGS, controls: bool = False
    ) -> None:
        self.out, self.scale, self.jobs, self.configs = Path(out), scale, jobs, configs
        self.threads = max(1, _cpus() // jobs)
        self.configurations = STUDENTS + (CONTROLS if controls else ())
        self.log = self.out / "commands.log"

    # -- running commands ----------------------------------------------------------------------
    def run(self, step: str, args: list[str], done: Path | None = None) -> None:
        """Run `python -m <stage>.cli ARGS` unless `done` exists; its output goes to the log."""
        if done is not None and done.exists():
            return
        stage, *rest = args
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "OMP_NUM_THREADS": str(self.threads)}
        start = time.perf_counter()
        done_proc = subprocess.run(
            [sys.executable, "-m", f"{stage}.cli", *rest], capture_output=True, text=True, env=env
        )
        seconds = time.perf_counter() - start
        with self.log.open("a") as log:
            log.write(f"[{step}] $ {stage} {' '.join(rest)}\n{done_proc.stdout}{done_proc.stderr}")
        print(f"[{step}] {stage} {rest[0]} ({seconds:.0f} s)", flush=True)
        if done_proc.returncode != 0:
            tail = "\n".join(done_proc.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"[{step}] `{stage} {' '.join(rest)}` failed:\n{tail}")

    def parallel(self, tasks: list) -> None:
        """Run independent zero-argument callables `jobs` at a time; the first error stops the
        ones not started yet and is raised once the running ones end."""
        with ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(task) for task in tasks]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    # -- the steps -----------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def worlds(self) -> None:
        s = self.scale
        splits = [
            ("teachers", "train", 1, s.teacher_images),
            ("students", "train", 2, s.student_images),
            ("test", "test", 3, s.test_images),
        ]
        self.parallel(
            [
                lambda n=n, sp=sp, seed=seed, k=k: self.run(
                    f"render {n}",
                    [
                        "pipeline",
                        "world",
                        "render",
                        "--out",
                        str(self.path("world", n)),
                        "--images",
                        str(k),
                        "--seed",
                        str(seed),
                        "--split",
                        sp,
                        "--height",
                        str(s.height),
                        "--width",
                        str(s.width),
                        "--workers",
                        "1",
                    ],
                )
                for n, sp, seed, k in splits
            ]
        )
        for name in ("teachers", "students"):
            self.run(
                f"prepare {name}",
                [
                    "pipeline",
                    "prepare",
                    "--images",
                    str(self.path("world", name)),
                    "--out",
                    str(self.path("data", name)),
                    "--tile",
                    str(s.tile),
                    "--min-region",
                    str(s.min_region),
                    "--shard-size",
                    "32",
                ],
                done=self.path("data", name, "dataset.json"),
            )

    def teachers(self) -> None:
        s, data = self.scale, self.path("data", "teachers")
        self.run(
            "exact labels",
            [
                "pipeline",
                "world",
                "labels",
                "--dataset",
                str(data),
                "--world",
                str(self.path("world", "teachers")),
                "--column",
                "exact",
            ],
        )
        config = "ablations/table1-shared-global.yaml"  # relative depth, as real teachers learn

        def teacher(k: int, name: str, size: str) -> None:
            init = self.random_init(size, k)
            self.train(name, data, ["exact"], init, config, s.teacher_steps, s.teacher_lr, k,
                       export=True, extra=FROM_SCRATCH)  # fmt: skip

        self.parallel(
            [
                lambda k=k, name=name, size=size: teacher(k, name, size)
                for k, (name, size) in enumerate(zip(("t1", "t2"), s.teacher_sizes, strict=True))
            ]
        )
        students = self.path("data", "students")
        for name in ("t1", "t2"):
            spec = f"{name}=depth-anything-v2:{self.path('runs', name, 'export')}"
            spec += f",full_size={s.tile}"
            self.run(
                f"label {name}",
                [
                    "labelgen",
                    "run",
                    "--dataset",
                    str(students),
                    "--teacher",
                    spec,
                    "--precision",
                    "fp32",
                    "--no-progress",
                ],
            )

    def random_init(self, size: str, seed: int) -> Path:
        out = self.path("init", f"{size}-{seed}")
        self.run(
            f"init {size}",
            [
                "labelgen",
                "tiny-checkpoint",
                "depth-anything-v2",
                str(out),
                "--size",
                size,
                "--seed",
                str(seed),
            ],
            done=out,
        )
        return out

    def train(self, name, data, teachers, init, config, steps, lr, seed, export=False, extra=()):
        """`student train` into runs/NAME (again from scratch when interrupted); with `export`
        also `student export` to runs/NAME/export (teachers: labelgen loads a model directory;
        students are evaluated from their run directory)."""
        run = self.path("runs", name)
        finished = run / "checkpoints" / f"step_{steps:07d}.pt"
        if not finished.exists():
            shutil.rmtree(run, ignore_errors=True)
            args = ["student", "train", "--config", str(self.configs / config), "--dataset",
                    str(data), "--init", str(init), "--out", str(run), "--steps", str(steps),
                    "--batch-size", str(self.scale.batch), "--set", f"data.size={self.scale.size}",
                    "--set", "data.workers=0", "--set", f"optim.lr={lr}", "--set", f"seed={seed}",
                    "--set", f"checkpoint_every={steps}"]  # fmt: skip
            for teacher in teachers:
                args += ["--teacher", teacher]
            for override in extra:
                args += ["--set", override]
            self.run(f"train {name}", args)
        if export:
            self.run(
                f"export {name}",
                ["student", "export", str(run), "--out", str(run / "export")],
                done=run / "export" / "config.json",
            )

    def evaluate(self, name: str) -> None:
        """`evaluation run` of runs/NAME (a run directory) on the test split."""
        out = self.path("eval", name)
        test = f"world={self.path('world', 'test')}"
        args = ["evaluation", "run", "--model", str(self.path("runs", name)), "--dataset", test,
                "--out", str(out), "--name", name, "--workers", "0", "--device", "cpu",
                "--processing-res", str(self.eval_side())]  # fmt: skip
        self.run(f"evaluate {name}", args, done=out / "summary.json")

    def eval_side(self) -> int:
        """The long side the test images are predicted at: their short side at the student's
        input side, the scale at which students and teachers saw their training views."""
        s = self.scale
        return round(s.size * max(s.height, s.width) / min(s.height, s.width))

    def student_runs(self) -> list[tuple[Student, int]]:
        return [(st, seed) for st in self.configurations for seed in range(self.scale.seeds)]

    def students(self) -> None:
        s = self.scale

        def one(student: Student, seed: int) -> None:
            data = self.path("data", student.data)
            name = f"{student.name}-s{seed}"
            scratch = student.init == "scratch"
            init = (
                self.random_init(s.teacher_sizes[0], 100 + seed)
                if scratch
                else self.path("runs", student.init, "export")
            )
            lr = s.teacher_lr if scratch else s.student_lr
            extra = (FROM_SCRATCH if scratch else ()) + student.overrides
            self.train(name, data, student.teachers, init, student.config, s.student_steps, lr,
                       seed, extra=extra)  # fmt: skip
            self.evaluate(name)

        self.parallel([lambda st=st, k=k: one(st, k) for st, k in self.student_runs()])
        self.parallel([lambda n=n: self.evaluate(n) for n in ("t1", "t2")])

    def __call__(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "study.json").write_text(
            json.dumps(
                {
                    "scale": asdict(self.scale),
                    "students": [asdict(x) for x in self.configurations],
                }
            )
        )
        started = time.perf_counter()
        self.worlds()
        self.teachers()
        self.students()
        report = write_report(self, time.perf_counter() - started)
        print(f"report: {report}")
        return report


def _cpus() -> int:
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return len(usable) if usable else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> Path:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--out", type=Path, required=True, help="study directory (resumable)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--jobs", type=int, default=_cpus(), help="steps run at a time")
    parser.add_argument("--seeds", type=int, help="seeds per student configuration")
    parser.add_argument("--configs", type=Path, default=CONFIGS, help="the configs/ folder")
    parser.add_argument(
        "--controls",
        action="store_true",
        help="also Table 2's rows with an encoder-only init and with the exact depth as teacher",
    )
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    if args.seeds:
        scale = replace(scale, seeds=args.seeds)
    return Study(args.out, scale, max(1, args.jobs), args.configs, args.controls)()


if __name__ == "__main__":
    main()
