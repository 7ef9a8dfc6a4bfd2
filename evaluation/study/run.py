"""The paper's ablations end to end on the procedural world, where depth is known exactly.

    pipeline bench world --out DIR [--scale cpu|gpu-quick|gpu|smoke] [--jobs N] [--until teachers]
        [--teachers STUDY_DIR] [--scale-set FIELD=VALUE ...] [--teacher-set KEY=VALUE ...]
        [--rows all|table2|dpt] [--seeds N] [--controls]

Every step is a command a user runs (printed as it goes, each in its own process); only the
labels' origin is special to the world:

1. `pipeline world render`: a split to train the teachers on, a split to distill on, a test
   split, and a second test split of another image shape (`ood`: another aspect ratio and so
   another vertical field of view, as the paper's benchmarks are zero-shot);
2. `pipeline prepare` of both training splits, with the scale's plan geometry;
3. `pipeline world labels`: the exact depth of every planned view of the teachers' split;
4. two real teachers: `student train` on that exact column from a random initialisation
   (`labelgen tiny-checkpoint --size`), different in size (`mini` and `tiny` at the CPU scale),
   then `student export` to `runs/NAME/export` (a model directory, as a user's checkpoint).
   A teacher is trained only when its export is missing;
5. the priors and the ceiling (`priors.py`), scored like models, and `evaluation run` of both
   teachers on both test splits; the report says whether t1 clears the bar (`TEACHER_BAR`).
   `--until teachers` stops here;
6. `labelgen run --teacher NAME=depth-anything-v2:EXPORT` with both on the distillation split;
7. the students, initialised from t2 (a smaller model than their teacher t1, trained on another
   split: `plan.Student.init` says why): Table 2 (base, shared-context only, local-global only,
   both), Table 1's normalizations of the shared-context term, both teachers at once, one
   student trained from scratch as a control, and Table 2's base and both again with a DPT
   student (`dpt.py`: it starts from `t2-dpt`, a DPT trained in step 4 as t2 is, scored beside
   the teachers); each with several seeds; `evaluation run` of each;
8. the report (`report.py`): mean ± standard deviation over seeds beside the paper's numbers
   and the priors, the `evaluation report` table, and one figure per configuration.

Steps whose outputs are complete are skipped, so an interrupted study resumes (an interrupted
training run resumes from its last checkpoint). Independent steps run `--jobs` at a time, each
with `cpus // jobs` torch threads (and OpenMP threads that sleep while they wait, unless
`OMP_WAIT_POLICY` says otherwise: spinning ones cost several times the CPU on a shared machine).

Exit status: 0 when t1 clears the bar, 3 when it does not (the report then draws no conclusion
about the method: its models are noise around a prior).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from evaluation.study.commands import Commands, flags
from evaluation.study.dpt import MIRRORS, write_dpt_init
from evaluation.study.plan import (
    CONFIGS,
    CONTROLS,
    FROM_SCRATCH,
    ROWS,
    SEEDS,
    TEACHER_S_PER_STEP,
    Scale,
    Student,
)
from evaluation.study.priors import PRIORS, fit_horizon, write_predictions
from evaluation.study.report import teacher_verdict, write_report
from pipeline.toolkit.cpus import usable_cpus
from student.checkpoint import checkpoint_step
from student.rundir import RunDir


class Study(Commands):
    def __init__(
        self,
        out: Path,
        scale: Scale,
        jobs: int,
        configs: Path = CONFIGS,
        controls: bool = False,
        rows: str = "all",
        teachers_from: Path | None = None,
    ) -> None:
        super().__init__(out, jobs, max(1, usable_cpus() // jobs))
        self.scale, self.configs = scale, configs
        self.teachers_from = Path(teachers_from) if teachers_from else None
        self.configurations = ROWS[rows] + (CONTROLS if controls else ())
        self.teacher_overrides: tuple[str, ...] = ()
        """More `student train --set` settings of the teachers (`--teacher-set`)."""

    def worlds(self) -> None:
        s = self.scale
        ood_h, ood_w = s.ood
        splits = [
            ("teachers", "train", s.teacher_images, s.height, s.width),
            ("students", "train", s.student_images, s.height, s.width),
            ("test", "test", s.test_images, s.height, s.width),
            ("ood", "test", s.test_images, ood_h, ood_w),
        ]
        self.parallel(
            [
                lambda n=n, sp=sp, k=k, h=h, w=w: self.run(
                    f"render {n}",
                    ["pipeline", "world", "render"]
                    + flags(
                        out=self.path("world", n),
                        images=k,
                        seed=SEEDS[n],
                        split=sp,
                        height=h,
                        width=w,
                        workers=self.threads,  # the job's share of the cores
                    ),
                )
                for n, sp, k, h, w in splits
            ]
        )
        for name in ("teachers", "students"):
            self.run(
                f"prepare {name}",
                ["pipeline", "prepare"]
                + flags(
                    images=self.path("world", name),
                    out=self.path("data", name),
                    tile=s.tile,
                    min_region=s.min_region,
                    shard_size=32,
                ),
                done=self.path("data", name, "dataset.json"),
            )

    def exact_labels(self) -> Path:
        """`pipeline world labels`: the exact column of the teachers' split; that dataset."""
        data = self.path("data", "teachers")
        self.run(
            "exact labels",
            ["pipeline", "world", "labels"]
            + flags(dataset=data, world=self.path("world", "teachers"), column="exact"),
        )
        return data

    def teachers(self) -> None:
        s, data = self.scale, self.exact_labels()
        config = "ablations/table1-shared-global.yaml"  # relative depth, as real teachers learn
        names = ("t1", "t2", *self.dpt_inits())
        missing = [n for n in names if not self.path("runs", n, "export", "config.json").is_file()]
        if missing and self.teachers_from is not None:
            for name in missing:
                source = self.teachers_from / "runs" / name / "export"
                found = (source / "config.json").is_file()
                if name in MIRRORS and not found:
                    continue  # a study without DPT students has none: trained here
                if not found:
                    raise FileNotFoundError(
                        f"--teachers {self.teachers_from}: no exported teacher {source} (a study "
                        "directory whose teachers are trained: `pipeline bench world --until "
                        "teachers`)"
                    )
                shutil.copytree(source, self.path("runs", name, "export"))
                print(f"[teacher {name}] reused from {source}", flush=True)
            missing = [n for n in missing if not self.path("runs", n, "export").is_dir()]
        if missing:
            print(
                f"[teachers] training {', '.join(missing)} from random weights, {s.teacher_steps} "
                f"steps each: a one-time cost (on 2 cores at 168x252 about "
                f"{s.teacher_steps * TEACHER_S_PER_STEP / 60:.0f} min); later studies reuse them "
                "with --teachers THIS_DIR",
                flush=True,
            )

        def teacher(name: str) -> None:
            k = {"t1": 0, "t2": 1, **MIRRORS}[name]  # a pre-trained DPT: its teacher's size, seed
            size = s.teacher_sizes[k]
            init = self.random_dpt(size, k) if name in MIRRORS else self.random_init(size, k)
            self.train(
                name,
                data,
                ["exact"],
                init,
                config,
                s.teacher_steps,
                s.teacher_lr,
                k,
                export=True,
                extra=FROM_SCRATCH + self.teacher_overrides,
            )

        self.parallel([lambda name=name: teacher(name) for name in missing])

    def baselines(self) -> None:
        """The priors and the ceiling, and both teachers, scored on both test splits."""
        horizon = self.horizon()
        for split in ("test", "ood"):
            for prior in PRIORS:
                out = self.path("eval", self.eval_name(prior, split))
                if not (out / "summary.json").is_file():
                    write_predictions(
                        out, prior, self.path("world", split), side=self.scale.size, horizon=horizon
                    )
                self.run(
                    f"score {prior} {split}",
                    ["evaluation", "score", str(out)]
                    + flags(
                        dataset=f"world={self.path('world', split)}",
                        pred_space="disparity",
                        name=prior,
                        workers=0,
                        device="auto",
                    ),
                    done=out / "summary.json",
                )
        pairs = [(n, sp) for n in ("t1", "t2", *self.dpt_inits()) for sp in ("test", "ood")]
        self.parallel(
            [lambda n=n, sp=sp: self.evaluate(n, sp) for n, sp in pairs]
            + [lambda c=c: self.evaluate_checkpoint(c) for c in self.teacher_checkpoints()]
        )

    def teacher_checkpoints(self) -> list[Path]:
        """Every checkpoint of both teachers (their learning curves)."""
        return [c for t in ("t1", "t2") for c in RunDir(self.path("runs", t)).checkpoint_files()]

    def curve_dir(self, checkpoint: Path) -> Path:
        """Where `checkpoint` (RUN/checkpoints/step_N.pt) is scored: curves/RUN/step_N."""
        return self.path("curves", checkpoint.parent.parent.name, checkpoint.stem)

    def evaluate_checkpoint(self, checkpoint: Path) -> None:
        """`evaluation run` of one checkpoint on the test split (a point of a learning curve)."""
        run = checkpoint.parent.parent.name
        name = f"{run}-{checkpoint.stem}".replace("_", "-")
        out = self.curve_dir(checkpoint)
        self.evaluation_run(f"{run} {checkpoint.stem}", checkpoint, name, "test", out)

    def horizon(self) -> float:
        """The ramp's horizon fitted on the teachers' training split (kept in `horizon.json`)."""
        path = self.path("eval", "horizon.json")
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"horizon": fit_horizon(self.path("world", "teachers"))}))
        return float(json.loads(path.read_text())["horizon"])

    def label(self) -> None:
        students, tile = self.path("data", "students"), self.scale.tile
        for name in ("t1", "t2"):
            spec = f"{name}=depth-anything-v2:{self.path('runs', name, 'export')},full_size={tile}"
            self.run(
                f"label {name}",
                ["labelgen", "run", "--no-progress"]
                + flags(dataset=students, teacher=spec, precision="fp32"),
            )

    def dpt_inits(self) -> tuple[str, ...]:
        """The pre-trained DPTs the configurations start from (`dpt.MIRRORS`), in order."""
        return tuple(n for n in MIRRORS if any(st.init == n for st in self.configurations))

    def random_dpt(self, size: str, seed: int) -> Path:
        """A random plain-ViT DPT with the ViT of Depth Anything's `size` (`dpt.py`)."""
        out = self.path("init", f"dpt-{size}-{seed}")
        return write_dpt_init(out, size, seed, self.scale.size)

    def random_init(self, size: str, seed: int) -> Path:
        out = self.path("init", f"{size}-{seed}")
        self.run(
            f"init {size}",
            ["labelgen", "tiny-checkpoint", "depth-anything-v2", str(out)]
            + flags(size=size, seed=seed),
            done=out,
        )
        return out

    def train(self, name, data, teachers, init, config, steps, lr, seed, export=False, extra=()):
        """`student train` into runs/NAME (an interrupted run resumes from its last checkpoint);
        with `export` also `student export` to runs/NAME/export (teachers: labelgen loads a model
        directory; students are evaluated from their run directory)."""
        run = self.path("runs", name)
        done = checkpoint_step(run)
        if done < steps:
            args = ["student", "train"] + flags(out=run)
            if done > 0:
                args += ["--resume"]
            else:
                args += flags(
                    config=self.configs / config,
                    dataset=data,
                    init=init,
                    steps=steps,
                    batch_size=self.scale.batch,
                )
                args += [f"--teacher={t}" for t in teachers]
                sets = [
                    f"data.size={self.scale.size}",
                    f"data.workers={self.loader_workers()}",
                    f"optim.lr={lr}",
                    f"seed={seed}",
                    f"checkpoint_every={max(1, steps // 4)}",
                    *extra,
                ]
                args += [f"--set={x}" for x in sets]
            self.run(f"train {name}", args)
        if export:
            self.run(
                f"export {name}",
                ["student", "export", str(run)] + flags(out=run / "export"),
                done=run / "export" / "config.json",
            )

    def loader_workers(self) -> int:
        """Loader processes of a training run: none on a CPU machine (the cores train), a few
        per job on a GPU machine (the GPU would wait for the data otherwise)."""
        import torch

        return min(8, self.threads) if torch.cuda.is_available() else 0

    @staticmethod
    def eval_name(name: str, split: str = "test") -> str:
        return name if split == "test" else f"{name}@{split}"

    def evaluate(self, name: str, split: str = "test") -> None:
        """`evaluation run` of runs/NAME on a test split: its export when there is one (a
        teacher's, the model that labels, possibly reused from another study; a DPT student's),
        else the run directory (a Depth Anything student)."""
        export = self.path("runs", name, "export")
        model = export if (export / "config.json").is_file() else self.path("runs", name)
        out = self.path("eval", self.eval_name(name, split))
        self.evaluation_run(f"{name} {split}", model, name, split, out)

    def evaluation_run(self, step: str, model: Path, name: str, split: str, out: Path) -> None:
        """`evaluation run --model MODEL` on a test split into `out` (skipped once scored)."""
        args = ["evaluation", "run"]
        args += flags(
            model=model,
            dataset=f"world={self.path('world', split)}",
            out=out,
            name=name,
            workers=0,
            device="auto",
            processing_res=self.eval_side(split),
        )
        self.run(f"evaluate {step}", args, done=out / "summary.json")

    def eval_side(self, split: str = "test") -> int:
        """The long side the test images are predicted at: their short side at the student's
        input side, the scale at which students and teachers saw their training views."""
        h, w = (self.scale.height, self.scale.width) if split == "test" else self.scale.ood
        return round(self.scale.size * max(h, w) / min(h, w))

    def student_runs(self) -> list[tuple[Student, int]]:
        return [(st, seed) for st in self.configurations for seed in range(self.scale.seeds)]

    def students(self) -> None:
        s = self.scale

        def one(student: Student, seed: int) -> None:
            data = self.path("data", student.data)
            name = f"{student.name}-s{seed}"
            scratch = student.init == "scratch"
            init = (
                self.random_init(s.teacher_sizes[1], 100 + seed)
                if scratch
                else self.path("runs", student.init, "export")
            )
            lr = s.teacher_lr if scratch else s.student_lr
            extra = (FROM_SCRATCH if scratch else ()) + student.overrides
            # a DPT student is scored from its export: `evaluation run` loads run directories
            # as Depth Anything models
            self.train(
                name,
                data,
                student.teachers,
                init,
                student.config,
                s.student_steps,
                lr,
                seed,
                export=student.init in MIRRORS,
                extra=extra,
            )
            self.evaluate(name)

        self.parallel([lambda st=st, k=k: one(st, k) for st, k in self.student_runs()])

    def run_steps(self, until: str, about: dict) -> float:
        """Every step up to `until` (`teachers` or `report`), with `about` (what the study is)
        in `study.json`; the wall seconds."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "study.json").write_text(json.dumps({"scale": asdict(self.scale), **about}))
        started = time.perf_counter()
        self.worlds()
        self.teachers()
        self.baselines()
        if until != "teachers":
            self.label()
            self.students()
        return time.perf_counter() - started

    def __call__(self, until: str = "report") -> tuple[Path, bool]:
        """Run the study up to `until` (`teachers` or `report`); the report and whether t1 clears
        the bar."""
        about = {"teacher_overrides": list(self.teacher_overrides)}
        about["students"] = [asdict(x) for x in self.configurations]
        report = write_report(self, self.run_steps(until, about))
        verdict = teacher_verdict(self)
        print(verdict.line)
        print(f"report: {report}")
        return report, verdict.passed
