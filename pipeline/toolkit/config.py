"""Settings as dataclasses, loaded as `defaults <- YAML file <- --set a.b=c <- flags`, shared by
every CLI (the flags that set a field directly are derived from it: `pipeline.toolkit.options`).

Unknown keys are errors that name the key and list the valid ones; values are checked against the
field types, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class _SettingsLoader(yaml.SafeLoader):
    """YAML as settings are read: also `1e-4` and `1.0e4` are floats (YAML 1.1, PyYAML's
    dialect, reads them as text), in a file, a list or a `--set` value alike."""


_SettingsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$"),
    list("+-0123456789."),
)


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML error (PyYAML's run to five, with a caret under a copy of the line):
    where (line and column, 1-based) and what."""
    mark = getattr(error, "problem_mark", None)
    what = getattr(error, "problem", None) or getattr(error, "context", None)
    if what is None:
        return (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark else what


def _read_yaml(text: str, where: str, fix: str) -> Any:
    try:
        return yaml.load(text, Loader=_SettingsLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML ({yaml_problem(e)}); {fix}") from e


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one value against a field type (dataclass, Optional, list, scalars)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if (
        isinstance(tp, type)
        and not isinstance(value, tp)
        or (tp is int and isinstance(value, bool))
    ):
        raise ValueError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
    return value


def _build(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ValueError(
            f"unknown setting(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid: {', '.join(prefix + k for k in sorted(types_))}"
        )
    default = cls()
    kwargs = {}
    for name, tp in types_.items():
        key = f"{where}.{name}" if where else name
        if name not in values:
            kwargs[name] = getattr(default, name)
        elif dataclasses.is_dataclass(tp) and isinstance(values[name], dict):
            nested = dataclasses.asdict(getattr(default, name)) | values[name]
            kwargs[name] = _build(tp, nested, key)
        else:
            kwargs[name] = _coerce(values[name], tp, key)
    return cls(**kwargs)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: {part!r} is not a group of settings")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=c` -> ("a.b", c parsed as YAML, so 3 -> int, 1e-4 -> float, [1, 2] -> list); a value
    that is no YAML is a one-line ValueError naming the `--set` argument."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. --set loss.lambda_lg=0.5")
    fix = "write the value as YAML, e.g. a list as [0.5, 0.5], text with ':' or '#' in quotes"
    value = _read_yaml(raw, f"--set {text!r}", fix) if raw.strip() else ""
    return key.strip(), value


def load_config(
    cls: type[T],
    path: Path | str | None = None,
    overrides: list[str] = (),
    values: dict[str, Any] | None = None,
) -> T:
    """Build settings `cls` from its defaults, then a YAML file, then `--set` overrides, then
    `values` (dotted key -> value: what a command's own flags set, checked like the rest)."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        loaded = _read_yaml(path.read_text(), str(path), "fix the file") or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings at the top level")
        tree = loaded
    for text in overrides:
        _set_path(tree, *parse_override(text))
    for key, value in (values or {}).items():
        _set_path(tree, key, value)
    config = _build(cls, tree)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Settings `cls` from a plain dict (e.g. a run's saved config), checked like a YAML file."""
    config = _build(cls, values)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML-able dict of a settings dataclass (for run directories)."""
    return dataclasses.asdict(config)
