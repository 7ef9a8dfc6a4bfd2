"""Teacher specs: `NAME=ADAPTER:SOURCE[,key=value...]` on the command line or a YAML list, and
`load_teacher`, which turns a spec into a ready `Teacher` through the registry."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from labelgen.teachers.base import TEACHERS, Teacher
from labelgen.teachers.source import check_source
from pipeline.model.precision import check_precision
from pipeline.toolkit.cliutil import parse_options

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
SPEC_FORMAT = "NAME=ADAPTER:SOURCE[,key=value...]"
SPEC_EXAMPLE = "dav2-large=depth-anything-v2:depth-anything/Depth-Anything-V2-Large-hf"
# Options every adapter accepts.
COMMON_OPTIONS = {"revision": "hub revision (branch, tag or commit) of a hub id source"}
_YAML_KEYS = ("name", "adapter", "source", "options")


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher to run: which label column it writes and where its weights come from."""

    name: str
    """Label column name: lower-case letters, digits, '-' and '_' (no dots)."""
    adapter: str
    """Registry name of the adapter (`depth-anything-v2`, `dpt`, `genpercept`, `marigold`, `hf`)."""
    source: str
    """Local checkpoint directory or hub id."""
    options: dict[str, str] = field(default_factory=dict)
    """Adapter options as given (strings); each adapter parses and checks its own."""

    def __str__(self) -> str:
        opts = "".join(f",{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}={self.adapter}:{self.source}{opts}"


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


def parse_teacher_spec(text: str) -> TeacherSpec:
    """Parse `NAME=ADAPTER:SOURCE[,key=value...]`, e.g. `SPEC_EXAMPLE`."""
    name, sep, rest = text.strip().partition("=")
    adapter, sep2, rest = rest.partition(":")
    if not (sep and sep2):
        raise ValueError(f"teacher spec {text!r}: expected {SPEC_FORMAT}, e.g. {SPEC_EXAMPLE}")
    source, *pairs = rest.split(",")
    options = parse_options(pairs, f"teacher spec {text!r}")
    return validate_spec(TeacherSpec(name.strip(), adapter.strip(), source.strip(), options))


def _option_str(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _spec_from_entry(entry: Any, where: str) -> TeacherSpec:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping with keys {list(_YAML_KEYS)}, got {entry!r}")
    unknown = sorted(set(entry) - set(_YAML_KEYS))
    missing = [k for k in _YAML_KEYS[:3] if not entry.get(k)]
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{where}: 'options' must be a mapping, got {options!r}")
    spec = TeacherSpec(
        str(entry["name"]),
        str(entry["adapter"]),
        str(entry["source"]),
        {str(k): _option_str(v) for k, v in options.items()},
    )
    try:
        return validate_spec(spec)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def load_teacher_specs_yaml(path: Path | str) -> list[TeacherSpec]:
    """Read a YAML list of `{name, adapter, source, options}` (or `{teachers: [...]}`)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read teacher list: {err}") from err
    if isinstance(data, dict) and set(data) == {"teachers"}:
        data = data["teachers"]
    if not isinstance(data, list) or not data:
        raise ValueError(
            f"{path}: expected a non-empty YAML list of teachers, each with keys {list(_YAML_KEYS)}"
        )
    specs = [_spec_from_entry(e, f"{path}: teacher #{i + 1}") for i, e in enumerate(data)]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: teacher names must be unique, repeated: {dupes}")
    return specs


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


# ---- option values (each adapter parses its own, with messages naming teacher and option) ----


def _bad(spec: TeacherSpec, key: str, what: str, example: str) -> ValueError:
    return ValueError(
        f"teacher {spec.name!r}: option {key}={spec.options[key]!r} is not {what}; "
        f"e.g. {key}={example}"
    )


def option_int(spec: TeacherSpec, key: str, default: int | None, minimum: int = 0) -> int | None:
    """Integer option ≥ `minimum`, or `default` when absent."""
    if key not in spec.options:
        return default
    try:
        value = int(spec.options[key])
    except ValueError:
        raise _bad(spec, key, "an integer", str(max(minimum, 1))) from None
    if value < minimum:
        raise _bad(spec, key, f"an integer ≥ {minimum}", str(max(minimum, 1)))
    return value


def option_bool(spec: TeacherSpec, key: str, default: bool) -> bool:
    """`true|false|1|0|yes|no` option, or `default` when absent."""
    if key not in spec.options:
        return default
    value = spec.options[key].lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise _bad(spec, key, "a boolean", "true")
    return value in ("true", "1", "yes")


def option_choice(spec: TeacherSpec, key: str, choices: tuple[str, ...]) -> str | None:
    """One of `choices`, or None when absent."""
    if key not in spec.options:
        return None
    if spec.options[key] not in choices:
        raise _bad(spec, key, f"one of {list(choices)}", choices[0])
    return spec.options[key]
