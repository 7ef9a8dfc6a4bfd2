"""What a teacher run writes into its label column's header, and the identity it asks for.

The identity (weights, crop plan, codec, backend, precision, teacher options, input resampling)
is known before the model is loaded, so a finished column is skipped without loading it; the full
provenance (output kind, input rule, ...) comes from the loaded teacher. A teacher given by hub
id is downloaded first (when it is not cached) to hash its files: the weights' identity is their
content, the same as for those files given as a local directory; the hub id and the commit it
resolved to are recorded beside it (`weights.source`, `weights.commit`).
"""

from __future__ import annotations

from typing import Any

import pipeline
from labelgen.settings import RunSettings
from labelgen.teachers import TeacherSpec, input_interpolation, weights_identity
from labelgen.teachers.source import hub_commit
from pipeline.labels.codecs import get_codec
from pipeline.labels.column import LabelColumn


def requested_identity(
    column: LabelColumn, spec: TeacherSpec, s: RunSettings, precision: str
) -> dict[str, Any]:
    """The column identity fields known without loading the model."""
    return column.requested_identity(
        weights_sha256=weights_identity(spec),
        codec=s.codec,
        backend=s.format,
        precision=precision,
        options=spec.options,
        interpolation=input_interpolation(spec),
    )


def provenance(column: LabelColumn, spec: TeacherSpec, teacher: Any, s: RunSettings) -> dict:
    """The column's manifest header for a loaded `teacher` (`ColumnManifest` fields)."""
    prov = teacher.provenance()
    weights = {"source": spec.source, "sha256": prov["weights_sha256"]}
    commit = hub_commit(spec)
    if commit:
        weights["commit"] = commit
    return {
        "column": spec.name,
        "teacher": spec.name,
        "adapter": spec.adapter,
        "weights": weights,
        "output_kind": prov["output_kind"],
        "invariance": prov["invariance"],
        "input_rule": prov["input_rule"],
        "precision": prov["precision"],
        "codec": get_codec(s.codec).describe(),
        "backend": s.format,
        "plan_sha256": column.info.plan_hash,
        "code_version": pipeline.__version__,
        "extra": {"options": dict(spec.options)},
    }
