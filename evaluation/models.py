"""What `--model SPEC` names, loaded as one predictor, so teachers and students share one path.

SPEC is one of:
- a student run directory (`student train --out`): its newest checkpoint is exported to a
  temporary Hugging Face directory and loaded from there, exactly as the export would be;
- one checkpoint of a run (`RUN/checkpoints/step_NNNNNNN.pt`), the same way (learning curves);
- a Hugging Face directory or hub id (an exported student, Depth Anything, DPT, any
  `AutoModelForDepthEstimation`);
- a teacher spec as `labelgen` accepts it: `ADAPTER:SOURCE[,key=value...]` or
  `NAME=ADAPTER:SOURCE[,...]` (e.g. `genpercept:/ckpt/genpercept,kind=disparity`).

Every predictor is a `labelgen` teacher underneath: `[B,3,H,W]` RGB in [0,1] in, `[B,1,H,W]`
float32 out at the input size, with its adapter's own resize and normalization.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from labelgen.teachers import TEACHERS, Teacher, TeacherSpec, load_teacher, parse_teacher_spec
from labelgen.teachers.hf import adapter_for_model_type
from labelgen.teachers.spec import spec_adapter
from pipeline.model.source import CheckpointUnavailable, looks_like_path, resolve_checkpoint


@dataclass
class Predictor:
    """A loaded model and what a result must record about it."""

    name: str
    spec: str
    kind: str
    """`teacher`, `student` (a run directory) or `hf` (a Hugging Face directory or hub id)."""
    teacher: Teacher
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pred_space(self) -> str:
        """`disparity` or `depth`: the space the least-squares fit runs in."""
        return "disparity" if self.teacher.output_kind == "disparity" else "depth"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec,
            "kind": self.kind,
            "pred_space": self.pred_space,
            "teacher": self.teacher.provenance(),
            **self.extra,
        }

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """`[B,3,H,W]` float RGB in [0,1] -> `[B,1,H,W]` float32 on the images' device (the
        adapter picks its own no-grad mode)."""
        return self.teacher.predict(images)

    @property
    def takes_focal(self) -> bool:
        """Whether the model's output depends on the image's focal length (Depth Pro, a metric
        student trained on canonical depth): `evaluation predict` then passes each benchmark
        image's."""
        return bool(getattr(self.teacher, "takes_focal", False))

    def predict_with_focal(self, images: torch.Tensor, f_px: list[float | None]) -> torch.Tensor:
        """`predict`, given each image's focal length in pixels of the image as passed (None
        where unknown: the model assumes or estimates one)."""
        return self.teacher.predict_with_focal(images, f_px)[0]


def display_name(text: str) -> str:
    """A label-column-style name from a path or hub id: `runs/dad-small/` -> `dad-small`."""
    base = Path(text.rstrip("/")).name or text
    name = re.sub(r"[^a-z0-9_-]+", "-", base.lower()).strip("-_")
    return name or "model"


def is_run_dir(path: Path) -> bool:
    """A `student train --out` directory (with or without a checkpoint yet)."""
    from student.rundir import RunDir

    return RunDir(path).config.is_file()


def run_of_checkpoint(path: Path) -> Path | None:
    """The run directory whose published checkpoint `path` is, else None."""
    from student.rundir import RunDir

    run = path.parent.parent
    return run if is_run_dir(run) and path in RunDir(run).checkpoint_files() else None


def teacher_spec_of(text: str) -> TeacherSpec | None:
    """The teacher spec `text` names (`[NAME=]ADAPTER:SOURCE[,...]`, named after its SOURCE when
    `NAME=` is left out), or None when `text` names no registered adapter."""
    adapter = spec_adapter(text)
    if adapter is None or adapter not in TEACHERS:
        return None
    return parse_teacher_spec(text, default_name=display_name)


def hf_adapter(source: str) -> str:
    """The adapter for a Hugging Face directory or hub id (downloaded first when it is not in
    the cache), from its config's model_type."""
    try:
        config = resolve_checkpoint(source, f"--model {source}") / "config.json"
    except CheckpointUnavailable as err:
        raise ValueError(
            f"{err} (--model also takes a student run directory, or a teacher spec "
            f"ADAPTER:SOURCE with ADAPTER in {sorted(TEACHERS)})"
        ) from None
    if not config.is_file():
        raise ValueError(
            f"--model {source}: {config.parent} has no config.json: not a Hugging Face model; "
            f"give a run directory or a teacher spec ADAPTER:SOURCE, ADAPTER in {sorted(TEACHERS)}"
        )
    return adapter_for_model_type(json.loads(config.read_text()).get("model_type"))


def load_predictor(
    spec: str, device: str = "cpu", precision: str = "fp32", name: str | None = None
) -> Predictor:
    """Load what `spec` names (see the module docstring) on `device`."""
    path = Path(spec)
    teacher_spec = None if path.exists() else teacher_spec_of(spec)
    if teacher_spec is not None:
        teacher = load_teacher(teacher_spec, device, precision)
        extra = _trained_on(teacher.resolved.directory)
        return Predictor(name or teacher_spec.name, spec, "teacher", teacher, extra)
    if is_run_dir(path):
        return _load_run(path, device, precision, name)
    if path.is_file() and (run := run_of_checkpoint(path)) is not None:
        return _load_run(run, device, precision, name, path)
    if not path.exists() and looks_like_path(spec):
        raise FileNotFoundError(f"--model {spec}: no such file or directory")
    tname = name or display_name(spec)
    teacher = load_teacher(TeacherSpec(tname, hf_adapter(spec), spec), device, precision)
    return Predictor(tname, spec, "hf", teacher, _trained_on(teacher.resolved.directory))


def _trained_on(directory: Path) -> dict[str, Any]:
    """`{"trained_on": [...]}`: the benchmarks a model of this architecture family trained on
    (MiDaS v3.1: NYUv2 and KITTI), where its scores are not zero-shot; {} for none."""
    from student.families import trained_on

    seen = trained_on(directory)
    return {"trained_on": seen} if seen else {}


def _load_run(
    run_dir: Path, device: str, precision: str, name: str | None, checkpoint: Path | None = None
) -> Predictor:
    """Export the run's `checkpoint` (default: its newest) to a temporary directory and load it
    from there."""
    from student.checkpoint import latest_checkpoint, step_of
    from student.export import export_run

    checkpoint = checkpoint or latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir}: run directory without a checkpoint yet")
    step = step_of(checkpoint)
    tname = name or display_name(str(run_dir))
    with tempfile.TemporaryDirectory(prefix="evaluation-export-") as tmp:
        export_run(run_dir, Path(tmp), step=step)
        teacher = load_teacher(TeacherSpec(tname, hf_adapter(tmp), tmp), device, precision)
        extra = {"checkpoint": str(checkpoint), **_trained_on(Path(tmp))}
    teacher.source = str(run_dir)
    return Predictor(tname, str(run_dir), "student", teacher, extra)
