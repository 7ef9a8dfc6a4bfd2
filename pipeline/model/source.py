"""Checkpoints named by a local directory or a hub id, as a local directory before anything reads
them: the one place every command (teachers in `labelgen run` / `estimate`, `student train
--init`, `student predict`, `evaluation run --model`) turns a hub id into files.

A directory is used as it is. A hub id is downloaded into the Hugging Face cache (`HF_HOME`)
unless it is there already (then nothing is downloaded again), at the `revision` asked for;
with `HF_HUB_OFFLINE=1` it is read from the cache only. A hub id that cannot be had is one
`CheckpointUnavailable` line that names who asked for it, the id and what to do. Either way the
`*.safetensors` files are checked against their own header first (`safetensors_problem`), so a
truncated or damaged file is named instead of failing deep inside a loader.

What a hub id brings: the files the loaders of the project read (`LOADED`: weights,
configuration, tokenizer and code files) except `NOT_LOADED` ones (precision variants, exported
formats); README files, pictures and other frameworks' weights stay on the hub. `identity_files`
is the matching rule for a checkpoint's content identity: its weight and JSON files that the
loaders read, the same for a directory and a hub snapshot, so the same files give the same
identity however they arrived (a download, `hf download`, a copy).
"""

from __future__ import annotations

import fnmatch
import json
import logging
from pathlib import Path

from pipeline.toolkit.cliutil import first_line

LOADED = ("*.safetensors", "*.bin", "*.json", "*.txt", "*.model", "*.py")
"""Repository files a loader may read (weights, configuration, tokenizer, remote code)."""
NOT_LOADED = (
    # exported formats
    "onnx/*",
    "coreml/*",
    "openvino/*",
    # precision variants (loaders read the plain files unless asked for a variant)
    "*.fp16.*",
    "*.bf16.*",
    "*.non_ema.*",
)
"""Of those, the files no loader of the project reads: not downloaded, not hashed."""
WEIGHT_SUFFIXES = (".safetensors", ".bin")
IDENTITY_SUFFIXES = (*WEIGHT_SUFFIXES, ".json")


class CheckpointUnavailable(FileNotFoundError):
    """A hub id that is neither in the cache nor downloadable: the message is one line."""


class DamagedCheckpoint(ValueError):
    """A weight file of a checkpoint that cannot be read: the message names it and the fix."""


def is_local_dir(source: str | Path) -> bool:
    """True when `source` is an existing local directory."""
    return Path(source).expanduser().is_dir()


def looks_like_path(source: str) -> bool:
    """True when `source` cannot be a hub id (`org/name`): absolute, `./`, `~`, nested, ..."""
    if source.startswith(("/", ".", "~")) or "\\" in source or source.count("/") > 1:
        return True
    first = source.split("/", 1)[0]
    return "/" in source and Path(first).is_dir()


def not_loaded(name: str) -> bool:
    """True for a repository file (`/`-separated path) that no loader reads (`NOT_LOADED`)."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in NOT_LOADED)


def identity_files(directory: Path) -> list[Path]:
    """The files of a checkpoint directory its content identity covers, sorted: weights
    (`*.safetensors`, `*.bin`) and JSON configuration, minus `NOT_LOADED` ones and minus `*.bin`
    files in a folder that has `*.safetensors` (the loaders read those instead)."""
    files = [p for p in sorted(directory.rglob("*")) if p.is_file()]
    files = [p for p in files if p.suffix in IDENTITY_SUFFIXES]
    files = [p for p in files if not not_loaded(p.relative_to(directory).as_posix())]
    safetensors = {p.parent for p in files if p.suffix == ".safetensors"}
    return [p for p in files if not (p.suffix == ".bin" and p.parent in safetensors)]


def resolve_checkpoint(
    source: str | Path, who: str, revision: str | None = None, subfolder: str | None = None
) -> Path:
    """The local directory of the checkpoint `source` (a directory, or a hub id downloaded first
    when it is not in the cache; with `subfolder`, only that folder of the repository). `who`
    starts the message of an error (e.g. "teacher 'dav2'", "--init")."""
    if is_local_dir(source):
        directory = Path(source).expanduser().resolve()
        check_weight_files(directory / (subfolder or ""), who, "copy or write the checkpoint again")
        return directory
    source = str(source)
    if looks_like_path(source):
        raise FileNotFoundError(f"{who}: directory {source} does not exist")
    key = (source, revision, subfolder, _cache_dir())
    if key not in _RESOLVED:
        directory = _download(source, who, revision, subfolder)
        again = f"download it again (`hf download {source} --force-download`)"
        check_weight_files(directory / (subfolder or ""), who, again)
        _RESOLVED[key] = directory
    return _RESOLVED[key]


_RESOLVED: dict[tuple, Path] = {}  # a hub id is looked up once per process


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a `.safetensors` file, or None when its header reads and the data it
    describes is exactly the rest of the file (a cheap check: the header only)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 0 or length > size - 8:
            return f"truncated or not a safetensors file: {size} bytes, no complete header"
        try:
            header = json.loads(f.read(length))
            end = max(
                (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                default=0,
            )
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "not a safetensors file: its header is not a tensor table"
    if 8 + length + end != size:
        return f"{size} bytes where its header describes {8 + length + end}: truncated or damaged"
    return None


def check_weight_files(directory: Path, who: str, fix: str) -> None:
    """Raise `DamagedCheckpoint` naming the first `*.safetensors` file of the checkpoint in
    `directory` that `safetensors_problem` finds wrong, what is wrong and `fix`."""
    if not directory.is_dir():
        return
    for path in identity_files(directory):
        problem = safetensors_problem(path) if path.suffix == ".safetensors" else None
        if problem:
            raise DamagedCheckpoint(f"{who}: weight file {path} is damaged ({problem}): {fix}")


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _download(repo_id: str, who: str, revision: str | None, subfolder: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    folder = f"{subfolder.strip('/')}/" if subfolder else ""
    allow = [folder + pattern for pattern in LOADED]
    for name in ("httpx", "httpx2"):  # one log line per request otherwise, under INFO logging
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        path = snapshot_download(
            repo_id, revision=revision, allow_patterns=allow, ignore_patterns=list(NOT_LOADED)
        )
    except HFValidationError as err:
        raise CheckpointUnavailable(
            f"{who}: {repo_id!r} is neither a local directory nor a valid hub id "
            f"({first_line(err)}); give an existing directory or a hub id ORG/NAME"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointUnavailable(
            f"{who}: hub id {repo_id!r} has no revision {revision!r}; give a branch, tag or "
            "commit it has (option revision=), or leave it out for main"
        ) from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise CheckpointUnavailable(
            f"{who}: {repo_id!r} is not a local directory, and the hub has no repository "
            f"{repo_id!r} (a private or gated one needs `hf auth login`): give an existing "
            "directory or hub id"
        ) from None
    except OSError as err:  # not cached and not downloadable (offline, no network, incomplete)
        raise CheckpointUnavailable(_unavailable(repo_id, who, revision, err)) from None
    path = Path(path)
    if not any(p.suffix in WEIGHT_SUFFIXES for p in path.rglob("*")):
        raise CheckpointUnavailable(
            f"{who}: hub id {repo_id!r}: {path} holds no weight files (*.safetensors, *.bin): "
            f"{_what_to_do(repo_id, revision)}"
        )
    return path


def _what_to_do(repo_id: str, revision: str | None) -> str:
    command = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    return (
        f"download it where there is network (e.g. `{command}` on a login node, with the same "
        "HF_HOME) or give a local directory"
    )


def _unavailable(repo_id: str, who: str, revision: str | None, err: OSError) -> str:
    """The one line for a hub id that is not (completely) in the cache and cannot be downloaded."""
    at = f" at revision {revision!r}" if revision else ""
    if _offline():
        why = "and HF_HUB_OFFLINE=1 forbids downloading it"
    else:
        why = f"and cannot be downloaded ({first_line(err)})"
    return (
        f"{who}: hub id {repo_id!r}{at} is not in the Hugging Face cache ({_cache_dir()}) {why}: "
        f"{_what_to_do(repo_id, revision)}"
    )
