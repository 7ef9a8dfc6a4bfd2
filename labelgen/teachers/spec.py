"""Teacher specs as values: `NAME=ADAPTER:SOURCE[,key=value...]` on the command line, a YAML list
of teachers, and the option-value parsers the adapters use. A leaf module: it knows the syntax,
not the adapters (`labelgen.teachers.factory` checks a spec against the registry and loads it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.toolkit.cliutil import parse_options
from pipeline.toolkit.config import yaml_problem

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


Check = Callable[[TeacherSpec], TeacherSpec]
"""A check a parsed spec goes through (the factory's `validate_spec`); returns the spec."""


def _unchecked(spec: TeacherSpec) -> TeacherSpec:
    return spec


def spec_adapter(text: str) -> str | None:
    """The ADAPTER of `[NAME=]ADAPTER:SOURCE[,key=value...]`, or None when `text` has no `:`
    before its first comma (then it is a path or a hub id, not a teacher spec). `NAME=` is there
    when an `=` comes before that comma."""
    head = text.split(",", 1)[0]
    if ":" not in head:
        return None
    _, eq, rest = head.partition("=")
    return (rest if eq else head).partition(":")[0]


def parse_spec_text(text: str, default_name: Callable[[str], str] | None = None) -> TeacherSpec:
    """Split `NAME=ADAPTER:SOURCE[,key=value...]` (e.g. `SPEC_EXAMPLE`) into a `TeacherSpec`: the
    syntax only, the adapter and its options are the factory's to check. With `default_name`,
    `NAME=` may be left out (`ADAPTER:SOURCE[,...]`, read as `spec_adapter` reads it) and the
    teacher is named `default_name(SOURCE)`."""
    text = text.strip()
    unnamed = default_name is not None and "=" not in text.split(",", 1)[0]
    name, sep, rest = ("", "=", text) if unnamed else text.partition("=")
    adapter, sep2, rest = rest.partition(":")
    if not (sep and sep2):
        raise ValueError(f"teacher spec {text!r}: expected {SPEC_FORMAT}, e.g. {SPEC_EXAMPLE}")
    source, *pairs = rest.split(",")
    options = parse_options(pairs, f"teacher spec {text!r}")
    source = source.strip()
    if unnamed and default_name is not None:
        name = default_name(source)
    return TeacherSpec(name.strip(), adapter.strip(), source, options)


def _option_str(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _spec_from_entry(entry: Any, where: str, check: Check) -> TeacherSpec:
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
        return check(spec)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def read_specs_yaml(path: Path | str, check: Check = _unchecked) -> list[TeacherSpec]:
    """Read a YAML list of `{name, adapter, source, options}` (or `{teachers: [...]}`); each spec
    goes through `check`, whose `ValueError` is reported with the file and the entry's number."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        why = f"not valid YAML ({yaml_problem(err)}); fix the file"
        raise ValueError(f"{path}: cannot read teacher list: {why}") from err
    except OSError as err:
        raise ValueError(f"{path}: cannot read teacher list: {err}") from err
    if isinstance(data, dict) and set(data) == {"teachers"}:
        data = data["teachers"]
    if not isinstance(data, list) or not data:
        raise ValueError(
            f"{path}: expected a non-empty YAML list of teachers, each with keys {list(_YAML_KEYS)}"
        )
    specs = [_spec_from_entry(e, f"{path}: teacher #{i + 1}", check) for i, e in enumerate(data)]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: teacher names must be unique, repeated: {dupes}")
    return specs


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
