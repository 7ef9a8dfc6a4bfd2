"""Where teacher weights come from: a local directory or a hub id (through the normal HF cache).

Every adapter loads with `from_pretrained(SOURCE)`; this module turns "not there" into one
`FileNotFoundError` that names the source and says what to do, finds the local directory the
weights were read from (the source itself, or the hub cache snapshot) and hashes its weight files
and its JSON configuration (model, image processor, scheduler, pipeline index), which shape the
labels as much as the weights do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from labelgen.teachers.spec import TeacherSpec
from pipeline.toolkit.cliutil import first_line
from pipeline.toolkit.hashing import sha256_file

T = TypeVar("T")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
CONFIG_SUFFIX = ".json"
PATH_KEYS = ("_name_or_path",)  # where a checkpoint was saved from: not part of its content


def is_local(source: str) -> bool:
    """True when `source` is an existing local directory."""
    return Path(source).expanduser().is_dir()


def looks_like_path(source: str) -> bool:
    """True when `source` cannot be a hub id (`org/name`): absolute, `./`, `~`, nested, ..."""
    if source.startswith(("/", ".", "~")) or "\\" in source or source.count("/") > 1:
        return True
    first = source.split("/", 1)[0]
    return "/" in source and Path(first).is_dir()


def missing_message(spec: TeacherSpec, detail: str = "") -> str:
    """The message for a source that is neither a local checkpoint nor a reachable hub id."""
    why = f" ({detail})" if detail else ""
    if is_local(spec.source):
        what = f"directory {spec.source!r} is not a {spec.adapter} checkpoint{why}."
    else:
        what = (
            f"{spec.source!r} is neither a local {spec.adapter} checkpoint directory nor a hub "
            f"id that can be loaded{why}. Pass an existing directory or a hub id (cached, or "
            f"with network access)."
        )
    return (
        f"teacher {spec.name!r}: {what} For a small test model run "
        f"`labelgen tiny-checkpoint {spec.adapter} DIR` and use {spec.name}={spec.adapter}:DIR"
    )


def check_source(spec: TeacherSpec) -> None:
    """Raise `FileNotFoundError` early for a local path that does not exist."""
    path = Path(spec.source).expanduser()
    if path.exists() and not path.is_dir():
        raise FileNotFoundError(missing_message(spec, f"{path} is a file, not a directory"))
    if not path.exists() and looks_like_path(spec.source):
        raise FileNotFoundError(missing_message(spec, f"directory {path} does not exist"))


def load_from_source(spec: TeacherSpec, loader: Callable[..., T], **kwargs) -> T:
    """`loader(SOURCE, **kwargs)` (a `from_pretrained`), with the hub revision option applied and
    a missing checkpoint reported as `FileNotFoundError` naming the source."""
    check_source(spec)
    if "revision" in spec.options and not is_local(spec.source):
        kwargs["revision"] = spec.options["revision"]
    source = str(Path(spec.source).expanduser()) if is_local(spec.source) else spec.source
    try:
        return loader(source, **kwargs)
    except OSError as err:
        raise FileNotFoundError(missing_message(spec, first_line(err))) from err


def diffusers_load_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """`from_pretrained` keywords for diffusers: the dtype under the name this diffusers version
    takes (`dtype` from 0.36, `torch_dtype` before) and low-memory loading only with accelerate."""
    from diffusers.utils import deprecation_utils, is_accelerate_available

    key = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    return {key: dtype, "low_cpu_mem_usage": is_accelerate_available()}


def fetch_file(spec: TeacherSpec, filename: str) -> Path | None:
    """Path of `filename` inside the checkpoint (downloaded through the HF cache for a hub id),
    or None when the checkpoint has no such file."""
    if is_local(spec.source):
        path = Path(spec.source).expanduser() / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(spec.source, filename, revision=spec.options.get("revision")))
    except OSError:  # EntryNotFoundError, LocalEntryNotFoundError, ... (all OSError subclasses)
        return None


def resolved_dir(source: str, revision: str | None = None) -> Path:
    """The local directory the weights were read from: `source` itself or its hub cache
    snapshot (call after loading, so the snapshot holds exactly what was downloaded)."""
    if is_local(source):
        return Path(source).expanduser().resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, revision=revision, local_files_only=True))


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
    """`(relative name, sha256)` of every weight file (`*.safetensors`, `*.bin`) and JSON
    configuration file under `directory`."""
    digests = []
    for p in sorted(directory.rglob("*")):
        if not p.is_file() or p.suffix not in (*WEIGHT_SUFFIXES, CONFIG_SUFFIX):
            continue
        digest = _config_sha256(p) if p.suffix == CONFIG_SUFFIX else sha256_file(p)
        digests.append((prefix + p.relative_to(directory).as_posix(), digest))
    return digests


def combine_digests(digests: list[tuple[str, str]]) -> str:
    """sha256 over the sorted `name\\0sha256\\n` lines: one identity for a set of weight files."""
    h = hashlib.sha256()
    for name, digest in sorted(digests):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def weights_sha256(source: str, revision: str | None = None) -> str:
    """Content hash of the weight and JSON configuration files of a checkpoint (local directory
    or cached hub id): the `weights_sha256` of a column's identity."""
    return combine_digests(weight_digests(resolved_dir(source, revision)))


def read_json_file(spec: TeacherSpec, filename: str) -> dict[str, Any]:
    """A JSON file of the checkpoint as a dict ({} when the checkpoint has none)."""
    path = fetch_file(spec, filename)
    if path is None:
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"teacher {spec.name!r}: cannot read {path}: {err}") from err
