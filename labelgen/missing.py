"""`labelgen missing`: what is left to label, per teacher column, and the commands that label
exactly that: one `labelgen run ... --shards LIST` and the SLURM array that does the same.

A shard's state is the one `pipeline status` shows (`pipeline.dataset.status.column_status`, the
rule every command applies: `LabelColumn.check_shard`): `missing` (not labelled yet), `failed`
(recorded as failed), `damaged` (listed as done, but the file is gone or has another size) or
`foreign` (labelled from other images, or the whole column for another crop plan). With `verify`,
done shards are also checksummed against the manifest as `pipeline verify` does (`corrupt`: a
flipped byte); those need `--redo`, the others are relabelled by any `labelgen run`.

On clusters that cancel preempted jobs instead of requeueing them, this is how a job is
resubmitted: the array spec passes the shard list to `docker/slurm_labelgen.sbatch` through the
`SHARDS` environment variable, and caps the array at `max_array` tasks (`--tasks-per-job`).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.dataset import DatasetInfo, load_dataset
from pipeline.dataset.status import column_status
from pipeline.labels.column import LabelColumn
from pipeline.labels.commands import relabel_command, shard_ranges
from pipeline.labels.manifest import shard_checksum

if TYPE_CHECKING:  # the command line starts without torch
    from labelgen.teachers import TeacherSpec

TODO_STATES = ("missing", "failed", "damaged", "foreign", "corrupt")
"""The states of a shard that is left to label (`pipeline status`'s, and `corrupt`)."""
SBATCH_SCRIPT = "docker/slurm_labelgen.sbatch"
DEFAULT_MAX_ARRAY = 1000
"""Array tasks one resubmission asks for at most (SLURM's MaxArraySize is often 1001)."""


@dataclass
class ColumnTodo:
    """What is left to label in one teacher's column."""

    spec: TeacherSpec
    states: dict[str, list[str]]
    """`{state: shard names}` for each of `TODO_STATES`."""
    flags: list[str] = field(default_factory=list)
    """`labelgen run` flags the column's shards were made with (backend, codec, precision,
    batch size; `--overwrite` for a column made for another crop plan)."""
    notes: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[str]:
        return sorted({name for names in self.states.values() for name in names})

    def describe(self, total: int) -> str:
        if not self.todo:
            return "\n".join([f"{self.spec.name}: complete ({total} shards)", *self.notes])
        parts = [f"{s} {shard_ranges(n)}" for s, n in self.states.items() if n]
        line = f"{self.spec.name}: {len(self.todo)} of {total} shards to label: " + "; ".join(parts)
        return "\n".join([line, *self.notes])


@dataclass
class Resubmission:
    """One `labelgen run` for the columns that share flags and `--redo` shards."""

    teachers: list[str]
    """Its `--teacher`/`--teachers-file` arguments."""
    names: list[str]
    shards: list[str]
    redo: list[str]
    flags: list[str]
    max_array: int

    @property
    def tasks_per_job(self) -> int:
        """Shards each array task labels at most: 1 unless the list is longer than the cap."""
        return max(1, math.ceil(len(self.shards) / self.max_array))

    @property
    def array_size(self) -> int:
        return math.ceil(len(self.shards) / self.tasks_per_job)

    def _redo(self) -> list[str]:
        return ["--redo", shard_ranges(self.redo)] if self.redo else []

    def command(self, root: Path) -> str:
        args = ["labelgen", "run", "--dataset", str(root), *self.teachers, *self.flags]
        return shlex.join([*args, "--shards", shard_ranges(self.shards), *self._redo()])

    def sbatch(self, root: Path) -> str:
        env = {"DATASET": str(root), "SHARDS": shard_ranges(self.shards)}
        teachers = self.teachers
        if teachers[0] == "--teachers-file":
            env["TEACHERS"], teachers = teachers[1], []
        if self.tasks_per_job > 1:
            env["TASKS_PER_JOB"] = str(self.tasks_per_job)
        array = f"--array=0-{self.array_size - 1}"
        args = ["sbatch", array, SBATCH_SCRIPT, *teachers, *self.flags, *self._redo()]
        return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(args)

    def as_dict(self, root: Path) -> dict[str, Any]:
        return {
            "columns": self.names,
            "shards": shard_ranges(self.shards),
            "redo": shard_ranges(self.redo),
            "command": self.command(root),
            "array_size": self.array_size,
            "tasks_per_job": self.tasks_per_job,
            "sbatch": self.sbatch(root),
        }


@dataclass
class MissingReport:
    root: Path
    total: int
    columns: list[ColumnTodo]
    resubmissions: list[Resubmission]

    @property
    def complete(self) -> bool:
        return not self.resubmissions

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.root),
            "shards": self.total,
            "complete": self.complete,
            "columns": {
                c.spec.name: {**c.states, "todo": c.todo, "notes": c.notes} for c in self.columns
            },
            "resubmit": [r.as_dict(self.root) for r in self.resubmissions],
        }

    def format(self) -> str:
        lines = [c.describe(self.total) for c in self.columns]
        for r in self.resubmissions:
            lines += ["", f"label them ({', '.join(r.names)}):", f"  {r.command(self.root)}"]
            per = f", up to {r.tasks_per_job} shards each" if r.tasks_per_job > 1 else ""
            lines += [f"or as a SLURM array of {r.array_size} tasks{per}:"]
            lines += [f"  {r.sbatch(self.root)}"]
        return "\n".join(lines)


def _corrupt(column: LabelColumn, shards: dict[str, dict[str, Any]]) -> list[str]:
    """Done shards whose checksum is not the one the manifest records (`pipeline verify`'s)."""
    index = {shard.name: shard.index for shard in column.info.shards}
    return [
        name
        for name, entry in shards.items()
        if entry["status"] == "done"
        and shard_checksum(column.shard_path(index[name])) != entry.get("sha256")
    ]


def column_todo(info: DatasetInfo, spec: TeacherSpec, verify: bool = False) -> ColumnTodo:
    """The shards of `spec`'s column left to label (see the module docstring)."""
    column = LabelColumn(info, spec.name)
    if column.reload() is None:
        states = {s: [] for s in TODO_STATES}
        return ColumnTodo(spec, {**states, "missing": [s.name for s in info.shards]})
    shards = column_status(info, spec.name)["shards"]
    states = {s: [n for n, e in shards.items() if e["status"] == s] for s in TODO_STATES}
    if verify:
        states["corrupt"] = _corrupt(column, shards)
    args = shlex.split(relabel_command(column))  # labelgen run --dataset D --teacher T FLAGS
    if column.other_plan():
        args.append("--overwrite")
    return ColumnTodo(spec, states, args[6:], _teacher_notes(spec, args[5]))


def _teacher_notes(spec: TeacherSpec, recorded: str) -> list[str]:
    """A note when the column was made by another teacher than `spec` (as its manifest records
    it): `labelgen run` would refuse the printed command."""
    from labelgen.teachers.spec import parse_spec_text

    if "=ADAPTER:SOURCE" in recorded or parse_spec_text(recorded) == spec:
        return []
    return [
        f"{spec.name}: note: the column was made by teacher {recorded}, not {spec}; "
        "`labelgen run` refuses another teacher, options or weights (pass the recorded one, or "
        "a new name, or add --overwrite to relabel the whole column)"
    ]


def _teacher_args(specs: list[TeacherSpec], teachers_file: Path | None, all_specs: list) -> list:
    if teachers_file is not None and specs == all_specs:
        return ["--teachers-file", str(teachers_file)]
    return [arg for spec in specs for arg in ("--teacher", str(spec))]


def find_missing(
    dataset: Path | str,
    specs: list[TeacherSpec],
    teachers_file: Path | None = None,
    verify: bool = False,
    max_array: int = DEFAULT_MAX_ARRAY,
) -> MissingReport:
    """What is left to label for each teacher of `specs` (read from `teachers_file`, or given on
    the command line: the commands repeat them the same way), and one resubmission per group of
    columns that share their flags and `--redo` shards (usually one for all)."""
    if max_array < 1:
        raise ValueError(f"--max-array must be ≥ 1, got {max_array}")
    info = load_dataset(dataset)
    columns = [column_todo(info, spec, verify) for spec in specs]
    groups: dict[tuple, list[ColumnTodo]] = {}
    for c in columns:
        if c.todo:
            groups.setdefault((tuple(c.flags), tuple(c.states["corrupt"])), []).append(c)
    resubmissions = [
        Resubmission(
            teachers=_teacher_args([c.spec for c in group], teachers_file, specs),
            names=[c.spec.name for c in group],
            shards=sorted({s for c in group for s in c.todo}),
            redo=list(redo),
            flags=list(flags),
            max_array=max_array,
        )
        for (flags, redo), group in groups.items()
    ]
    return MissingReport(info.layout.root, len(info.shards), columns, resubmissions)
