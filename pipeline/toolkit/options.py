"""Command-line options derived from a settings dataclass, so that each setting is written once:
its default and its help text are the field's default and the docstring under it.

Every command line of the project is a `command_app` (help in click's plain layout). A command
declares a group of fields as the default of one of its parameters, and `settings_command` turns
that parameter into one typer option per field and hands the command the settings object built
from them:

    @app.command()
    @user_errors
    @settings_command
    def run(
        dataset: Path = typer.Option(..., help="A prepared dataset directory."),
        settings: RunSettings = SettingsOptions(RunSettings),
    ) -> None: ...

Field `batch_size` becomes `--batch-size`, typed by its annotation, defaulting to the field's
default (shown in `--help`), explained by its docstring. A bool field that defaults to False is a
switch (`--claim`), one that defaults to True also has its off switch (`--progress/--no-progress`).
`fields` exposes a subset (the others keep their defaults), `flags` respells a flag, `defaults`
gives fields this command's own defaults (`pipeline.toolkit.launch.Launch`'s precision). With
`overrides=True` the options default to None and the command receives a dict of only the fields
given on the command line, to apply over `--config` and `--set` (`load_config(..., values=...)`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer

from pipeline.toolkit.settings_doc import field_default, field_docs

F = TypeVar("F", bound=Callable[..., Any])
SCALARS = (bool, int, float, str, Path)
"""The field types a flag can hold (each also as `X | None`); lists and nested groups of
settings are set through a settings file or `--set` instead."""
OVERRIDE_NOTE = "Overrides --config and --set."


def command_app(help: str, **settings: Any) -> typer.Typer:
    """A typer app laid out as every command line of the project is: click's plain help layout,
    each option's help wrapped under its flag at any width, a switch shown without a value.

    (typer's Rich panels, its default when Rich is installed, squeeze the help into a fifth
    column that at 80 columns is some twenty characters wide, cut each word longer than that
    with "…", e.g. `NAME=ADAPTER:SOURCE[,key=value...]` and its example, and label every
    switch `<bool>` as if it took a value; they also read `[x]` in a help text as markup.)
    `settings` go to `typer.Typer` (e.g. `no_args_is_help`)."""
    settings.setdefault("pretty_exceptions_show_locals", False)
    return typer.Typer(help=help, rich_markup_mode=None, **settings)


def _kebab_flag(name: str) -> str:
    """`batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def _scalar_type(tp: Any, where: str) -> tuple[type, bool]:
    """`(scalar type, optional)` of a field annotation; anything else is a TypeError."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0] if len(args) == 1 else tp
    if tp not in SCALARS:
        raise TypeError(f"{where}: a {tp} field is no command-line option (set it with --set)")
    return tp, optional


class SettingsOptions:
    """The fields of settings dataclass `cls` a command takes as options (see the module doc)."""

    def __init__(
        self,
        cls: type,
        fields: tuple[str, ...] | None = None,
        flags: Mapping[str, str] | None = None,
        overrides: bool = False,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        all_fields = {f.name: f for f in dataclasses.fields(cls)}
        self.cls, self.overrides, self.flags = cls, overrides, dict(flags or {})
        self.defaults = dict(defaults or {})
        self.names = tuple(fields) if fields is not None else tuple(all_fields)
        unknown = sorted((set(self.names) | set(self.flags) | set(self.defaults)) - set(all_fields))
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {', '.join(unknown)}")
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        self._fields = {name: all_fields[name] for name in self.names}
        self._types = {n: _scalar_type(hints[n], f"{cls.__name__}.{n}") for n in self.names}
        self._docs = {n: docs.get(n, "") for n in self.names}
        undocumented = [n for n, doc in self._docs.items() if not doc]
        if undocumented:
            raise TypeError(f"{cls.__name__}: no docstring under {', '.join(undocumented)}")

    def default(self, name: str) -> Any:
        """The field's default, or this command's (`defaults`): what the flag defaults to (or
        stands for, with `overrides`)."""
        if name in self.defaults:
            return self.defaults[name]
        return field_default(self._fields[name])

    def spelling(self, name: str) -> str:
        """The flag as typer declares it, e.g. `--batch-size` or `--progress/--no-progress`."""
        if name in self.flags:
            return self.flags[name]
        flag = _kebab_flag(name)
        tp, _ = self._types[name]
        two_way = tp is bool and (self.overrides or self.default(name) is True)
        return f"{flag}/--no-{flag[2:]}" if two_way else flag

    def flag(self, name: str) -> str:
        """The flag that sets field `name` (for messages), e.g. `--batch-size`."""
        return self.spelling(name).split("/")[0]

    def help(self, name: str) -> str:
        """The field's docstring, the option's help text."""
        doc = self._docs[name]
        return f"{doc} {OVERRIDE_NOTE}" if self.overrides else doc

    def parameters(self, kind: inspect._ParameterKind) -> list[inspect.Parameter]:
        """One typer option parameter per field, named like the field."""
        return [self._parameter(name, kind) for name in self.names]

    def _parameter(self, name: str, kind: inspect._ParameterKind) -> inspect.Parameter:
        tp, optional = self._types[name]
        help_text = self.help(name)
        if self.overrides:
            option = typer.Option(
                None, self.spelling(name), help=help_text, show_default=str(self.default(name))
            )
            annotation: Any = tp | None
        else:
            option = typer.Option(self.default(name), self.spelling(name), help=help_text)
            annotation = tp | None if optional else tp
        return inspect.Parameter(name, kind, default=option, annotation=annotation)

    def build(self, values: dict[str, Any]) -> Any:
        """The command's argument: settings `cls` from the option values (the fields not exposed
        keep their defaults), or with `overrides` the dict of the options given."""
        if self.overrides:
            return {name: value for name, value in values.items() if value is not None}
        return self.cls(**{**self.defaults, **values})


def settings_command(fn: F) -> F:
    """Expand each parameter of `fn` whose default is a `SettingsOptions` into its options; the
    wrapped command receives the built settings under that parameter's name. Put it innermost
    (below `user_errors`), so that a settings check that fails is a one-line user error."""
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)
    groups: dict[str, SettingsOptions] = {}
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        param = param.replace(annotation=hints.get(param.name, param.annotation))
        if isinstance(param.default, SettingsOptions):
            groups[param.name] = param.default
            params += param.default.parameters(param.kind)
        else:
            params.append(param)
    names = [p.name for p in params]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice or not groups:
        why = f"{', '.join(twice)} declared twice" if twice else "no SettingsOptions parameter"
        raise TypeError(f"{fn.__qualname__}: {why}")
    expanded = signature.replace(parameters=params)

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        values = dict(expanded.bind(*args, **kwargs).arguments)
        for name, group in groups.items():
            values[name] = group.build({n: values.pop(n) for n in group.names if n in values})
        return fn(**values)

    command.__signature__ = expanded  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    if signature.return_annotation is not inspect.Signature.empty:
        command.__annotations__["return"] = hints.get("return", signature.return_annotation)
    return command  # type: ignore[return-value]
