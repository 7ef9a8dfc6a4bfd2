"""From a spec to a teacher: the checks against the adapter registry, `resolve_teacher` (the
checkpoint located and its identity computed, once per job) and `load_teacher`. The spec syntax
itself lives in `labelgen.teachers.spec`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from labelgen.teachers.base import TEACHERS, Teacher
from labelgen.teachers.source import ResolvedTeacher, locate
from labelgen.teachers.spec import (
    COMMON_OPTIONS,
    NAME_RE,
    SPEC_EXAMPLE,
    SPEC_FORMAT,
    TeacherSpec,
    parse_spec_text,
    read_specs_yaml,
)
from pipeline.model.precision import check_precision


def valid_options(adapter: str) -> dict[str, str]:
    """Option key -> help for `adapter` (common options included)."""
    return {**COMMON_OPTIONS, **TEACHERS.get(adapter).options_help}


def validate_spec(spec: TeacherSpec) -> TeacherSpec:
    """Check the name, the adapter and the option keys; returns `spec` unchanged."""
    if not NAME_RE.match(spec.name):
        raise ValueError(
            f"teacher name {spec.name!r} is invalid: use lower-case letters, digits, '-' or '_' "
            f"(no dots, it names the label column), e.g. {SPEC_EXAMPLE.split('=')[0]}"
        )
    valid = valid_options(spec.adapter)  # unknown adapter: ValueError listing valid ones
    unknown = sorted(set(spec.options) - set(valid))
    if unknown:
        listing = ", ".join(f"{k} ({h})" for k, h in sorted(valid.items()))
        raise ValueError(
            f"teacher {spec.name!r}: unknown option(s) {unknown} for adapter {spec.adapter!r}; "
            f"valid: {listing}"
        )
    if not spec.source:
        raise ValueError(f"teacher {spec.name!r}: empty SOURCE in {SPEC_FORMAT}")
    return spec


def parse_teacher_spec(text: str, default_name: Callable[[str], str] | None = None) -> TeacherSpec:
    """Parse and check `NAME=ADAPTER:SOURCE[,key=value...]`, e.g. `SPEC_EXAMPLE` (with
    `default_name`, `NAME=` may be left out: see `spec.parse_spec_text`)."""
    return validate_spec(parse_spec_text(text, default_name))


def load_teacher_specs_yaml(path: Path | str) -> list[TeacherSpec]:
    """Read and check a YAML list of `{name, adapter, source, options}` (or `{teachers: [...]}`)."""
    return read_specs_yaml(path, validate_spec)


def resolve_teacher(spec: TeacherSpec | str) -> ResolvedTeacher:
    """Resolve a teacher once, before it is loaded: its checkpoint directory (downloaded first for
    a hub id that is not cached), hub commit, weights hash (every weight file read once, here)
    and input resampling. The column identity, the loading (`load_teacher`) and the column's
    provenance all read the value this returns, so a job resolves each teacher once."""
    if isinstance(spec, str):
        spec = parse_teacher_spec(spec)
    cls = TEACHERS.get(validate_spec(spec).adapter)
    cls.check_options(spec)
    checkpoint = locate(spec)
    cls.check(checkpoint)
    parts = cls.parts_of(checkpoint)
    return ResolvedTeacher(
        spec,
        checkpoint.directory,
        checkpoint.commit,
        weights_sha256=cls.weights_identity(checkpoint, parts),
        interpolation=cls.interpolation_of(checkpoint),
        parts=parts,
    )


def load_teacher(
    teacher: ResolvedTeacher | TeacherSpec | str,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> Teacher:
    """Load a teacher on `device` at `precision` (`bf16|fp16|fp32`): a resolved one
    (`resolve_teacher`), or the one a spec (or spec string) names, resolved first. Weights are
    read with `from_pretrained(DIR)`."""
    check_precision(precision)
    resolved = teacher if isinstance(teacher, ResolvedTeacher) else resolve_teacher(teacher)
    cls = TEACHERS.get(resolved.spec.adapter)
    return cls.from_checkpoint(resolved, torch.device(device), precision)
