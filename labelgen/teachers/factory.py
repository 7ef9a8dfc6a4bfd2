"""From a spec to a teacher: the checks against the adapter registry, `load_teacher` and the
weights' identity. The spec syntax itself lives in `labelgen.teachers.spec`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from labelgen.teachers.base import TEACHERS, Teacher
from labelgen.teachers.source import check_source
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


def load_teacher(
    spec: TeacherSpec | str, device: torch.device | str = "cpu", precision: str = "fp32"
) -> Teacher:
    """Load the teacher a spec (or spec string) names, on `device` at `precision`
    (`bf16|fp16|fp32`). Weights are read with `from_pretrained(SOURCE)`."""
    if isinstance(spec, str):
        spec = parse_teacher_spec(spec)
    validate_spec(spec)
    check_precision(precision)
    return TEACHERS.get(spec.adapter).from_spec(spec, torch.device(device), precision)


def weights_identity(spec: TeacherSpec) -> str:
    """Content hash of the teacher's weights, without loading the model (cheap: files only)."""
    validate_spec(spec)
    check_source(spec)  # a missing local directory says so, not "invalid repo id"
    return TEACHERS.get(spec.adapter).weights_identity(spec)


def input_interpolation(spec: TeacherSpec) -> str:
    """How the teacher resamples its input (`Teacher.interpolation_of`), without loading it."""
    validate_spec(spec)
    check_source(spec)
    return TEACHERS.get(spec.adapter).interpolation_of(spec)
