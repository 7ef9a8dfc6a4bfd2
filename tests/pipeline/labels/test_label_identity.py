"""A column's identity is declared once (`ColumnIdentity`), read from manifests in the format
they have always had, and compared field by field."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from pipeline.labels import identity
from pipeline.labels.identity import IDENTITY_FIELDS, ColumnIdentity
from pipeline.labels.manifest import ColumnManifest

ROOT = Path(__file__).resolve().parents[3]

# A header as `labelgen run` wrote it before the identity became one dataclass (and still does).
OLD_MANIFEST = {
    "schema_version": 1,
    "column": "dav2-large",
    "teacher": "dav2-large",
    "adapter": "depth-anything-v2",
    "weights": {"source": "org/dav2", "sha256": "a" * 64, "commit": "c" * 40},
    "output_kind": "disparity",
    "invariance": "affine",
    "input_rule": {"resize": "multiple_of_14", "multiple": 14, "interpolation": "bicubic"},
    "precision": "bf16",
    "codec": {"name": "pcodec-f16", "params": {"level": 8}},
    "backend": "wds",
    "plan_sha256": "p" * 64,
    "code_version": "0.1.0",
    "extra": {"options": {"full_size": "518"}},
    "shards": {},
}


def test_the_identity_fields_are_declared_once():
    fields = dataclasses.fields(ColumnIdentity)
    assert tuple(f.metadata[identity.KEY] for f in fields) == IDENTITY_FIELDS
    assert len(set(IDENTITY_FIELDS)) == len(fields)
    assert all(f.metadata[identity.CHANGED] for f in fields)
    # The dotted manifest paths are written in one module: every other one derives them.
    dotted = {key for key in IDENTITY_FIELDS if "." in key}
    assert dotted == {"weights.sha256", "extra.options", "input_rule.interpolation"}
    found = {}
    for package in ("pipeline", "labelgen", "student", "evaluation"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value in dotted:
                    found.setdefault(path.relative_to(ROOT).as_posix(), set()).add(node.value)
    assert found == {"pipeline/labels/identity.py": dotted}


def test_a_manifest_written_before_reads_its_identity(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(OLD_MANIFEST, indent=2))
    manifest = ColumnManifest.load(path)
    assert manifest.identity() == ColumnIdentity(
        weights_sha256="a" * 64,
        plan_sha256="p" * 64,
        output_kind="disparity",
        codec={"name": "pcodec-f16", "params": {"level": 8}},
        backend="wds",
        precision="bf16",
        options={"full_size": "518"},
        interpolation="bicubic",
    )
    assert ColumnIdentity.of_header(OLD_MANIFEST) == manifest.identity()
    manifest.save(tmp_path / "again.json")  # the on-disk format is unchanged
    assert json.loads((tmp_path / "again.json").read_text()) == OLD_MANIFEST


@pytest.mark.parametrize("input_rule", [{"short_side": 518}, None, "bilinear"])
def test_a_header_without_the_input_resampling_reads_it_as_none(input_rule):
    old = {**OLD_MANIFEST, "input_rule": input_rule, "extra": {}}
    read = ColumnManifest.from_dict(old).identity()
    assert read.interpolation is None and read.options is None
    assert read.weights_sha256 == "a" * 64


def test_differences_before_loading_leave_the_output_kind_out():
    made = ColumnManifest.from_dict(OLD_MANIFEST).identity()
    asked = dataclasses.replace(made, output_kind=None, precision="fp16")
    assert made.differences(asked) == ["output_kind", "precision"]
    assert made.differences(asked, before_loading=True) == ["precision"]
    assert identity.changed("precision") == "another precision"
    assert identity.manifest_key("options") == "extra.options"
