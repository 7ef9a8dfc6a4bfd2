"""What a teacher run writes into its label column's header, and the identity it asks for.

Both read the `ResolvedTeacher` the job resolved once (`labelgen.teachers.resolve_teacher`): the
identity (weights, crop plan, codec, backend, precision, teacher options, input resampling) is
known before the model is loaded, so a finished column is skipped without loading it; the full
provenance (output kind, input rule, ...) comes from the loaded teacher, and its identity fields
from the identity asked for, so the two cannot disagree. A teacher given by hub id is downloaded
first (when it is not cached) to hash its files: the weights' identity is their content, the same
as for those files given as a local directory; the hub id and the commit it resolved to are
recorded beside it (`weights.source`, `weights.commit`).
"""

from __future__ import annotations

from typing import Any

import pipeline
from labelgen.settings import RunSettings
from labelgen.teachers import ResolvedTeacher, Teacher
from pipeline.labels.codecs import get_codec
from pipeline.labels.column import LabelColumn
from pipeline.labels.identity import ColumnIdentity


def requested_identity(
    column: LabelColumn, teacher: ResolvedTeacher, s: RunSettings, precision: str
) -> ColumnIdentity:
    """The column identity a run of `teacher` asks for, known without loading the model (its
    output kind is not)."""
    return ColumnIdentity(
        weights_sha256=teacher.weights_sha256,
        plan_sha256=column.info.plan_hash,
        codec=get_codec(s.codec).describe(),
        backend=s.format,
        precision=precision,
        options=dict(teacher.spec.options),
        interpolation=teacher.interpolation,
    )


def provenance(column: LabelColumn, requested: ColumnIdentity, teacher: Teacher) -> dict:
    """The column's manifest header (`ColumnManifest` fields) for the loaded `teacher`, with the
    `requested` identity (`requested_identity`)."""
    resolved, prov = teacher.resolved, teacher.provenance()
    source = resolved.spec.source if resolved.commit else str(resolved.directory.resolve())
    weights = {"source": source, "sha256": requested.weights_sha256}  # relabelling from anywhere
    if resolved.commit:
        weights["commit"] = resolved.commit
    header: dict[str, Any] = {
        "column": column.name,
        "teacher": resolved.spec.name,
        "adapter": resolved.spec.adapter,
        "weights": weights,
        "output_kind": prov["output_kind"],
        "invariance": prov["invariance"],
        "input_rule": prov["input_rule"],
        "precision": requested.precision,
        "codec": requested.codec,
        "backend": requested.backend,
        "plan_sha256": requested.plan_sha256,
        "code_version": pipeline.__version__,
        "extra": {"options": requested.options},
    }
    return header
