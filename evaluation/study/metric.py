"""Metric depth end to end on the procedural world, which knows its camera and its metres exactly.

    pipeline bench world-metric --out DIR [--scale cpu|smoke|...] [--jobs N] [--seeds N]
        [--teachers STUDY_DIR]

Every step is a command a user runs (`commands.py`), skipped once its output exists:

1. the world splits and their datasets, as the world study makes them (`Study.worlds`); the
   world records each image's camera (50-80° horizontal field of view, drawn per image), so
   `pipeline prepare` gives every view its effective focal length;
2. `pipeline world labels`: the exact metric depth (metres) of every planned view of the
   teachers' split;
3. the metric teacher `m1`: `student train --set student.output=metric` from random weights on
   that exact column, then `student export` (a model directory holding `canonical_focal_px`);
   the students' start `t2`: a relative model trained as the world study's t2 is (its head gets
   the metric form when a metric student loads it, so both arms start from the same weights);
4. the image-blind metric priors (`metric_priors`) and `m1`, scored with `--alignment none`;
5. `labelgen run` with `m1` on the distillation split: each view is labelled in metres with its
   own focal length given to the teacher (region crops and tiles are longer lenses than the
   full image);
6. two students per seed, both `student.output=metric` from `t2`, through crops and tiles:
   - `canonical`: canonical depth at the run's `student.canonical_focal` (the median focal
     length of the teachers' split at the students' input side, `canonical_focal`);
   - `raw` (the negative control): the same labels in raw metres, the crops resized to the
     input side as they are (`student.canonical_focal=null`);
7. `evaluation run` of every model on both test splits (`ood`: another image shape), metric
   (`--alignment none`, each image's focal length from the world) and as today's protocol
   (scale and shift fitted); the report (`metric_report.py`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from evaluation.study.commands import flags
from evaluation.study.metric_report import write_metric_report
from evaluation.study.plan import (
    ARMS,
    FROM_SCRATCH,
    MAX_DEPTH,
    METRIC_LOSS,
    METRIC_LR,
    METRIC_PRIORS,
    SPLITS,
    START,
    START_CONFIG,
    STUDENT_CONFIG,
    TEACHER,
    TEACHER_CONFIG,
    Scale,
)
from evaluation.study.priors import load_split
from evaluation.study.run import Study
from pipeline.toolkit.atomic import write_bytes


class MetricStudy(Study):
    """The metric study in `out` (see the module docstring)."""

    def __init__(self, out: Path, scale: Scale, jobs: int, teachers_from: Path | None = None):
        super().__init__(out, scale, jobs, rows="table2", teachers_from=teachers_from)
        self.configurations = ()

    def canonical_focal(self) -> float:
        """f_c of the run: the median focal length of the teachers' split's images at the
        students' input side (their short side resized to it), kept in `eval/canonical.json`."""
        path = self.path("eval", "canonical.json")
        if not path.is_file():
            from pipeline.dataset import load_dataset

            info = load_dataset(self.path("data", "teachers"))
            focals = [
                cam.fx * self.scale.size / min(cam.height, cam.width)
                for shard in info.shards
                for cam in info.shard_intrinsics(shard.index).values()
            ]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(
                path, json.dumps({"canonical_focal": round(statistics.median(focals), 1)}).encode()
            )
        return float(json.loads(path.read_text())["canonical_focal"])

    def metric_sets(self) -> tuple[str, ...]:
        return (
            "student.output=metric",
            f"student.max_depth={MAX_DEPTH}",
            f"student.canonical_focal={self.canonical_focal()}",
            *METRIC_LOSS,
        )

    def teachers(self) -> None:
        s, data = self.scale, self.exact_labels()
        self.reuse_teachers((TEACHER, START))
        jobs = []
        for k, (name, config, extra) in enumerate(
            (
                (TEACHER, TEACHER_CONFIG, self.metric_sets()),
                (START, START_CONFIG, ()),
            )
        ):
            if (self.path("runs", name, "export", "config.json")).is_file():
                continue
            init = self.random_init(s.teacher_sizes[k], k)
            jobs.append(
                lambda n=name, c=config, i=init, k=k, e=extra: self.train(
                    n,
                    data,
                    ["exact"],
                    i,
                    c,
                    s.teacher_steps,
                    s.teacher_lr,
                    k,
                    True,
                    FROM_SCRATCH + e,
                )  # fmt: skip
            )
        self.parallel(jobs)

    def reuse_teachers(self, names: tuple[str, ...]) -> None:
        """Copy exported teachers from `--teachers` (a metric study directory) when given."""
        import shutil

        if self.teachers_from is None:
            return
        for name in names:
            source = self.teachers_from / "runs" / name / "export"
            target = self.path("runs", name, "export")
            if (source / "config.json").is_file() and not target.is_dir():
                shutil.copytree(source, target)
                print(f"[teacher {name}] reused from {source}", flush=True)

    def baselines(self) -> None:
        """The metric priors and the teacher, scored metric (`--alignment none`). The teachers'
        split is read only when a prior is still to be written (not on a resume)."""
        train: list = []
        for split in SPLITS:
            for prior in METRIC_PRIORS:
                out = self.path("eval", self.eval_name(prior, split))
                if not (out / "summary.json").is_file():
                    train = train or load_split(self.path("world", "teachers"))
                    write_metric_prior(out, prior, train, self.path("world", split))
                self.run(
                    f"score {prior} {split}",
                    ["evaluation", "score", str(out)]
                    + flags(
                        dataset=f"world={self.path('world', split)}",
                        pred_space="depth",
                        alignment="none",
                        name=prior,
                        workers=0,
                        device="auto",
                    ),
                    done=out / "summary.json",
                )
        self.parallel([lambda sp=sp: self.evaluate(TEACHER, sp) for sp in SPLITS])

    def label(self) -> None:
        export = self.path("runs", TEACHER, "export")
        spec = f"{TEACHER}=depth-anything-v2:{export},full_size={self.scale.tile}"
        self.run(
            f"label {TEACHER}",
            ["labelgen", "run", "--no-progress"]
            + flags(dataset=self.path("data", "students"), teacher=spec, precision="fp32"),
        )

    def student_names(self) -> list[tuple[str, str, int]]:
        return [(f"{arm}-s{k}", arm, k) for arm in ARMS for k in range(self.scale.seeds)]

    def students(self) -> None:
        s, data = self.scale, self.path("data", "students")
        start = self.path("runs", START, "export")

        def one(name: str, arm: str, seed: int) -> None:
            extra = self.metric_sets() + ARMS[arm]
            self.train(
                name, data, [TEACHER], start, STUDENT_CONFIG, s.student_steps,
                s.student_lr * METRIC_LR, seed, export=True, extra=extra,
            )  # fmt: skip
            for split in SPLITS:
                self.evaluate(name, split)

        self.parallel([lambda n=n, a=a, k=k: one(n, a, k) for n, a, k in self.student_names()])

    def __call__(self, until: str = "report") -> tuple[Path, bool]:
        """Run the study up to `until`; the report and whether the canonical students beat the
        image-blind priors."""
        seconds = self.run_steps(until, {"arms": {k: list(v) for k, v in ARMS.items()}})
        report, beats = write_metric_report(self, seconds)
        print(f"report: {report}")
        return report, beats


def write_metric_prior(out: Path, name: str, train: list, test: Path) -> Path:
    """Depth predictions (metres) of an image-blind metric prior for every image of `test`:
    `prior-median-depth`, the median valid depth of the training split everywhere;
    `prior-depth-map`, the per-pixel median of the training split's valid depth (the average
    layout in metres), resized to each test image."""
    import torch
    import torch.nn.functional as F

    out = Path(out)
    folder = out / "predictions" / "world"
    folder.mkdir(parents=True, exist_ok=True)
    valid = [s.depth[s.valid_mask] for s in train]
    median = float(np.median(np.concatenate(valid)))
    shape = train[0].depth.shape
    stack = np.stack(
        [np.where(s.valid_mask, s.depth, np.nan) for s in train if s.depth.shape == shape]
    )
    with np.errstate(all="ignore"):
        layout = np.nan_to_num(np.nanmedian(stack, axis=0), nan=median).astype(np.float32)
    for sample in load_split(test):
        h, w = sample.depth.shape
        if name == "prior-median-depth":
            pred = np.full((h, w), median, np.float32)
        elif name == "prior-depth-map":
            grid = torch.from_numpy(layout)[None, None]
            pred = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            pred = pred.numpy()
        else:
            raise ValueError(f"unknown metric prior {name!r}; known: {', '.join(METRIC_PRIORS)}")
        np.save(folder / f"{sample.key}.npy", pred)
    about = {"prior": name, "median_depth": median, "split": str(test)}
    write_bytes(out / "prior.json", json.dumps(about, indent=1).encode())
    return out
