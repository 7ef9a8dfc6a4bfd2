"""A teacher is resolved once per job: its checkpoint is located once and its weights are hashed
once (through the real path: `labelgen run`, the column identity, the loading, the provenance),
and the identity keeps its meaning: changed weights change it, the same weights (moved, or
resolved again) keep it, and it is the hash that columns written before were made with."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from lgrun_helpers import label, spec_str

import labelgen.teachers.source as source
from labelgen.teachers import load_teacher, resolve_teacher, write_tiny_checkpoint
from labelgen.teachers.source import combine_digests, weight_digests, weights_sha256
from pipeline.labels.manifest import ColumnManifest


@pytest.fixture
def counted(monkeypatch) -> dict[str, Counter]:
    """Every file hashed and every checkpoint located from now on, counted by path."""
    counts = {"hashed": Counter(), "located": Counter()}
    hash_file, config_hash, resolve = (
        source.sha256_file,
        source._config_sha256,
        source.resolve_checkpoint,
    )

    def sha256_file(path):
        counts["hashed"][Path(path).name] += 1
        return hash_file(path)

    def _config_sha256(path):
        counts["hashed"][Path(path).name] += 1
        return config_hash(path)

    def resolve_checkpoint(src, *args, **kwargs):
        counts["located"][str(src)] += 1
        return resolve(src, *args, **kwargs)

    monkeypatch.setattr(source, "sha256_file", sha256_file)
    monkeypatch.setattr(source, "_config_sha256", _config_sha256)
    monkeypatch.setattr(source, "resolve_checkpoint", resolve_checkpoint)
    return counts


def test_a_job_hashes_the_weights_once_and_locates_the_checkpoint_once(dataset, ckpt, counted):
    (report,) = label(dataset, [spec_str("dav", ckpt)])
    assert report.shards_done == ["000000", "000001", "000002"]  # the teacher was loaded
    files = {p.name for p in source.identity_files(ckpt)}
    assert "model.safetensors" in files
    assert counted["hashed"] == Counter(dict.fromkeys(files, 1))
    assert counted["located"] == Counter({str(ckpt): 1})

    for counts in counted.values():
        counts.clear()
    (again,) = label(dataset, [spec_str("dav", ckpt)])  # all done: hashed once to know it
    assert "nothing to do" in again.summary()
    assert counted["hashed"] == Counter(dict.fromkeys(files, 1))
    assert counted["located"] == Counter({str(ckpt): 1})


def test_identity_loading_and_provenance_read_one_resolved_value(dataset, ckpt, counted):
    resolved = resolve_teacher(spec_str("dav", ckpt))
    assert counted["hashed"]["model.safetensors"] == 1
    teacher = load_teacher(resolved)
    assert counted["hashed"]["model.safetensors"] == 1  # loading did not hash again
    assert teacher.resolved is resolved and teacher.weights_sha256 == resolved.weights_sha256
    assert teacher.interpolation == resolved.interpolation == "bicubic"
    assert resolved.directory == ckpt.resolve() and resolved.commit is None
    label(dataset, [spec_str("dav", ckpt)])
    manifest = ColumnManifest.load(dataset / "labels" / "dav" / "manifest.json")
    assert manifest.weights == {"source": str(ckpt), "sha256": resolved.weights_sha256}
    assert manifest.identity().weights_sha256 == resolved.weights_sha256
    assert manifest.identity().interpolation == resolved.interpolation


def test_changed_weights_change_the_identity_and_the_same_weights_keep_it(ckpt, tmp_path):
    first = resolve_teacher(spec_str("dav", ckpt))
    assert resolve_teacher(spec_str("dav", ckpt)) == first  # resolved again: the same value
    moved = shutil.copytree(ckpt, tmp_path / "moved")
    assert resolve_teacher(spec_str("dav", moved)).weights_sha256 == first.weights_sha256
    weights = moved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor: still a readable file, other weights
    weights.write_bytes(bytes(data))
    assert resolve_teacher(spec_str("dav", moved)).weights_sha256 != first.weights_sha256


def test_the_identity_is_the_hash_columns_were_made_with(ckpt, tmp_path):
    """The content hash of the files, as `labelgen run` computed it before a job resolved its
    teacher once: existing columns keep being recognised as done."""
    assert resolve_teacher(spec_str("dav", ckpt)).weights_sha256 == weights_sha256(str(ckpt))
    gp = write_tiny_checkpoint("genpercept", tmp_path / "gp")
    vae = tmp_path / "vae"
    shutil.copytree(gp / "vae", vae)
    resolved = resolve_teacher(f"gp=genpercept:{gp},vae={vae}")
    expected = weight_digests(gp) + weight_digests(vae, prefix="vae-source/")
    assert resolved.weights_sha256 == combine_digests(expected)
    assert set(resolved.parts) == {"vae"} and resolved.parts["vae"].directory == vae.resolve()
    assert resolve_teacher(f"gp=genpercept:{gp}").weights_sha256 == weights_sha256(str(gp))
