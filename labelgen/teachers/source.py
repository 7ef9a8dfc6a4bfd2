"""Where teacher weights come from: a local directory or a hub id (through the normal HF cache).

A teacher's SOURCE is resolved to a local directory once (`locate`, a `Checkpoint`: the directory
itself, or the hub snapshot, downloaded when it is not cached; `pipeline.model.source`); every
adapter then loads with `from_pretrained(DIR)` from it (`Checkpoint.load`) and the identity
hashes the same files. This module turns "not there" into one `FileNotFoundError` that names the
teacher and the source and says what to do, and hashes the checkpoint's weight files and its
JSON configuration (model, image processor, scheduler, pipeline index), which shape the labels
as much as the weights do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from labelgen.teachers.spec import TeacherSpec
from pipeline.model.quiet import quiet_loading
from pipeline.model.source import identity_files, is_local_dir, looks_like_path, resolve_checkpoint
from pipeline.toolkit.cliutil import first_line
from pipeline.toolkit.hashing import sha256_file

T = TypeVar("T")
PATH_KEYS = ("_name_or_path",)  # where a checkpoint was saved from: not part of its content


def is_local(source: str) -> bool:
    """True when `source` is an existing local directory."""
    return is_local_dir(source)


def who(spec: TeacherSpec) -> str:
    """How messages name the teacher."""
    return f"teacher {spec.name!r}"


def missing_message(spec: TeacherSpec, detail: str = "", directory: Path | None = None) -> str:
    """The message for a source that is no checkpoint of the adapter (`directory`: where a hub
    id's files were found)."""
    why = f" ({detail})" if detail else ""
    if is_local(spec.source):
        what = f"directory {spec.source!r} is not a {spec.adapter} checkpoint{why}."
    elif directory is not None:
        what = f"hub id {spec.source!r} ({directory}) is not a {spec.adapter} checkpoint{why}."
    else:
        what = (
            f"{spec.source!r} is neither a local {spec.adapter} checkpoint directory nor a hub "
            f"id that can be loaded{why}. Pass an existing directory or a hub id."
        )
    return (
        f"{who(spec)}: {what} For a small test model run "
        f"`labelgen tiny-checkpoint {spec.adapter} DIR` and use {spec.name}={spec.adapter}:DIR"
    )


def check_source(spec: TeacherSpec) -> None:
    """Raise `FileNotFoundError` early for a local path that does not exist."""
    path = Path(spec.source).expanduser()
    if path.exists() and not path.is_dir():
        raise FileNotFoundError(missing_message(spec, f"{path} is a file, not a directory"))
    if not path.exists() and looks_like_path(spec.source):
        raise FileNotFoundError(missing_message(spec, f"directory {path} does not exist"))


def checkpoint_dir(spec: TeacherSpec, subfolder: str | None = None) -> Path:
    """The local directory of the teacher's checkpoint: SOURCE itself, or the hub snapshot of
    SOURCE at option `revision=` (downloaded first when it is not in the cache; with
    `subfolder`, only that folder). See `pipeline.model.source.resolve_checkpoint`."""
    check_source(spec)
    return resolve_checkpoint(spec.source, who(spec), spec.options.get("revision"), subfolder)


@dataclass(frozen=True)
class Checkpoint:
    """A teacher's checkpoint as a local directory (`locate`): what loading reads."""

    spec: TeacherSpec
    """The teacher (or the part of it, e.g. GenPercept's `vae=` source) it was located for."""
    directory: Path
    """The checkpoint directory: SOURCE itself, or the hub snapshot of SOURCE."""
    commit: str | None
    """The commit of the hub snapshot (None for a local directory)."""

    def file(self, filename: str) -> Path | None:
        """Path of `filename` inside the checkpoint, or None when it has no such file."""
        path = self.directory / filename
        return path if path.is_file() else None

    def read_json(self, filename: str) -> dict[str, Any]:
        """A JSON file of the checkpoint as a dict ({} when the checkpoint has none)."""
        path = self.file(filename)
        if path is None:
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{who(self.spec)}: cannot read {path}: {err}") from err

    def load(self, loader: Callable[..., T], **kwargs) -> T:
        """`loader(DIR, **kwargs)` (a `from_pretrained`) on the checkpoint's directory. A
        checkpoint the loader cannot read is a `FileNotFoundError` naming the teacher and
        source."""
        try:
            with quiet_loading():
                return loader(str(self.directory), **kwargs)
        except OSError as err:
            hub = None if self.commit is None else self.directory
            raise FileNotFoundError(missing_message(self.spec, first_line(err), hub)) from err


@dataclass(frozen=True)
class ResolvedTeacher(Checkpoint):
    """A teacher resolved once, at the start of its job (`factory.resolve_teacher`): its
    checkpoint directory and hub commit, and its identity (weights hash, input resampling),
    which the column's identity, the loading and the column's provenance all read."""

    weights_sha256: str
    """Content hash of the weights (`checkpoint_sha256`, plus those of its `parts`)."""
    interpolation: str
    """How the teacher resamples its input (`base.INTERPOLATIONS`)."""
    parts: dict[str, Checkpoint] = field(default_factory=dict)
    """Other checkpoints the teacher reads, located with it (GenPercept's `vae=` source)."""


def locate(spec: TeacherSpec, subfolder: str | None = None) -> Checkpoint:
    """The `Checkpoint` of `spec` (`checkpoint_dir`; with `subfolder`, a hub id brings only that
    folder)."""
    directory = checkpoint_dir(spec, subfolder)
    return Checkpoint(spec, directory, None if is_local(spec.source) else directory.name)


def diffusers_load_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """`from_pretrained` keywords for diffusers: the dtype under the name this diffusers version
    takes (`dtype` from 0.36, `torch_dtype` before) and low-memory loading only with accelerate."""
    from diffusers.utils import deprecation_utils, is_accelerate_available

    key = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    return {key: dtype, "low_cpu_mem_usage": is_accelerate_available()}


def _config_sha256(path: Path) -> str:
    """sha256 of a JSON file's content, key order and the saved-from path left out (a file that
    is not valid JSON is hashed as bytes)."""
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError):
        return sha256_file(path)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in PATH_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def weight_digests(directory: Path, prefix: str = "") -> list[tuple[str, str]]:
    """`(relative name, sha256)` of every file under `directory` that the checkpoint's identity
    covers (`pipeline.model.source.identity_files`: the weights and JSON configuration the
    loaders read)."""
    digests = []
    for p in identity_files(directory):
        digest = _config_sha256(p) if p.suffix == ".json" else sha256_file(p)
        digests.append((prefix + p.relative_to(directory).as_posix(), digest))
    return digests


def combine_digests(digests: list[tuple[str, str]]) -> str:
    """sha256 over the sorted `name\\0sha256\\n` lines: one identity for a set of weight files."""
    h = hashlib.sha256()
    for name, digest in sorted(digests):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def checkpoint_sha256(directory: Path) -> str:
    """Content hash of the weight and JSON configuration files under `directory`
    (`weight_digests`): the `weights_sha256` of a column's identity. The same files give the
    same hash, from a directory or a hub id; the hub id and revision are recorded beside it
    (`weights.source`, `weights.commit`), not in it."""
    return combine_digests(weight_digests(directory))


def weights_sha256(source: str | TeacherSpec) -> str:
    """`checkpoint_sha256` of a checkpoint given as a local directory or a hub id (downloaded
    first when needed)."""
    spec = source if isinstance(source, TeacherSpec) else TeacherSpec("checkpoint", "", source)
    return checkpoint_sha256(checkpoint_dir(spec))
