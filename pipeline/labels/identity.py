"""A label column's identity: what runs that write into one column must agree on.

`ColumnIdentity` is the one declaration of it. Each field names where the manifest keeps it (a
dotted path into the header: `weights.sha256` is `header["weights"]["sha256"]`) and how a
refusal names a change of it; the manifest (`ColumnManifest.identity`), the column's refusal
(`LabelColumn.same_identity`) and `labelgen run` (which asks for an identity before it loads a
teacher) all derive from `dataclasses.fields(ColumnIdentity)`, so adding a field here is all
it takes. The manifest's format is unchanged by this: the identity is read from where the header
has always kept it, and a header that lacks a field (one written before it was recorded) reads
it as None.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

KEY = "manifest_key"
CHANGED = "changed"
AFTER_LOADING = "after_loading"


def _field(key: str, changed: str, after_loading: bool = False) -> Any:
    """A field kept at `key` in the manifest header; `changed` names a change of it in a refusal;
    `after_loading`: only known once the teacher is loaded."""
    return dataclasses.field(
        default=None, metadata={KEY: key, CHANGED: changed, AFTER_LOADING: after_loading}
    )


@dataclass(frozen=True)
class ColumnIdentity:
    """The header fields that must agree between runs writing into the same column."""

    weights_sha256: str | None = _field("weights.sha256", "other weights")
    """Content hash of the teacher's weight and configuration files."""
    plan_sha256: str | None = _field("plan_sha256", "another crop plan")
    """Hash of the crop plan the labels were made for."""
    output_kind: str | None = _field("output_kind", "another output kind", after_loading=True)
    """What the teacher outputs (known once it is loaded)."""
    codec: dict[str, Any] | None = _field("codec", "another codec")
    """`{"name", "params"}` of the label codec."""
    backend: str | None = _field("backend", "another backend")
    """Label backend ('wds', 'zarr')."""
    precision: str | None = _field("precision", "another precision")
    """Inference precision."""
    options: dict[str, Any] | None = _field("extra.options", "other teacher options")
    """The teacher's options (input sizes...): maps of one column must agree."""
    interpolation: str | None = _field("input_rule.interpolation", "another input resampling")
    """How the teacher resampled its input (e.g. bicubic where the image processor says so).
    labelgen headers have recorded it from the start (as "bilinear" before the processor's was
    followed); a header without it (or without an input_rule mapping) reads as None."""

    @classmethod
    def of_header(cls, header: Any) -> ColumnIdentity:
        """The identity a manifest header (a `ColumnManifest` or its dict) records."""
        return cls(**{f.name: value_at(header, f.metadata[KEY]) for f in dataclasses.fields(cls)})

    def differences(self, requested: ColumnIdentity, before_loading: bool = False) -> list[str]:
        """Names of the fields in which `requested` differs from this identity; with
        `before_loading`, only those known before the teacher is loaded."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if not (before_loading and f.metadata[AFTER_LOADING])
            and getattr(self, f.name) != getattr(requested, f.name)
        ]


IDENTITY_FIELDS = tuple(f.metadata[KEY] for f in dataclasses.fields(ColumnIdentity))
"""Where the manifest header keeps each identity field (dotted paths), in declaration order."""


def field_of(name: str) -> dataclasses.Field:
    """The `ColumnIdentity` field `name`."""
    return next(f for f in dataclasses.fields(ColumnIdentity) if f.name == name)


def manifest_key(name: str) -> str:
    """Where the header keeps field `name`, e.g. 'weights.sha256'."""
    return field_of(name).metadata[KEY]


def changed(name: str) -> str:
    """How a refusal names a change of field `name`, e.g. 'other weights'."""
    return field_of(name).metadata[CHANGED]


def value_at(header: Any, key: str) -> Any:
    """The value at dotted `key` of a header (attributes of a `ColumnManifest`, or keys of a
    dict); None where a part is missing or not a mapping."""
    top, _, sub = key.partition(".")
    value = header.get(top) if isinstance(header, dict) else getattr(header, top, None)
    if sub:
        value = value.get(sub) if isinstance(value, dict) else None
    return value


def short(value: Any) -> str:
    """A value for a one-line message: a 64-character hash as its first 12, others as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:12] if isinstance(value, str) and len(text) == 64 else text
