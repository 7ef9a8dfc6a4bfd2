"""The configuration reference: every setting of a settings dataclass with its default and the
docstring written under the field, rendered as a Markdown table (the README's reference is
generated from the code this way and a test keeps the two equal). The command-line options derived
from the same fields (`pipeline.toolkit.options`) take their help text from here too."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from typing import Any


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal that follows the field in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


def field_default(f: dataclasses.Field) -> Any:
    """The default of a dataclass field (its factory called), or None when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def settings_rows(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """`(dotted key, default, doc)` of each leaf setting of `cls`, nested dataclasses flattened."""
    docs = field_docs(cls)
    rows: list[tuple[str, Any, str]] = []
    for f in dataclasses.fields(cls):
        default = field_default(f)
        if dataclasses.is_dataclass(default):
            rows += settings_rows(type(default), f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", default, docs.get(f.name, "")))
    return rows


def settings_markdown(cls: type) -> str:
    """A `| setting | default | meaning |` table of `cls`."""
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    for key, default, doc in settings_rows(cls):
        shown = repr(default) if isinstance(default, str) else default
        lines.append(f"| `{key}` | `{shown}` | {doc.replace('|', '/')} |")
    return "\n".join(lines)
