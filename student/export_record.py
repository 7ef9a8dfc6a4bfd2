"""What an export records of where it came from (`export.json`), and the rules of `--out`.

`export.json` names the run (its directory name and a fingerprint of its resolved path, not the
path: the export is meant to be uploaded), the checkpoint step, the format and the precision. It
is what lets `student export` replace a directory it wrote for the same run, refuse one it did
not write (unless `--overwrite`), and what `--eval` checks an evaluation of an export against.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from student.rundir import checkpoint_name

EXPORT_FILE = "export.json"
SCHEMA = 1


def run_fingerprint(run_dir: Path) -> str:
    """A short hash of the run directory's resolved path: the same run, without its path."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def export_record(run_dir: Path, step: int, fmt: str, precision: str) -> dict[str, Any]:
    """The `export.json` of run `run_dir`'s checkpoint at `step`, exported as `fmt`."""
    return {
        "schema": SCHEMA,
        "run": Path(run_dir).resolve().name,
        "run_fingerprint": run_fingerprint(run_dir),
        "step": step,
        "checkpoint": f"checkpoints/{checkpoint_name(step)}",
        "format": fmt,
        "precision": precision,
    }


def read_export_record(directory: Path) -> dict[str, Any] | None:
    """The `export.json` of `directory`, or None when it has none (or an unreadable one)."""
    try:
        record = json.loads((Path(directory) / EXPORT_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) and "run_fingerprint" in record else None


def describe(record: dict[str, Any]) -> str:
    return f"run {record.get('run', '?')} at step {record.get('step', '?')}"


def check_out(out: Path, run_dir: Path, overwrite: bool = False) -> None:
    """Refuse an `--out` that is a file, or a non-empty directory that is not an export of run
    `run_dir` (unless `overwrite`): one line naming it and the fix."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(
            f"--out {out} is an existing file, not a directory: choose a directory path for "
            "the export"
        )
    if not out.is_dir() or overwrite:
        return
    have = sorted(p.name for p in out.iterdir())
    if not have:
        return
    record = read_export_record(out)
    if record is not None and record["run_fingerprint"] == run_fingerprint(run_dir):
        return
    listing = ", ".join(have[:4]) + (", ..." if len(have) > 4 else "")
    what = f"an export of {describe(record)}" if record else f"not an export (it holds {listing})"
    raise FileExistsError(
        f"--out {out} is not empty and is {what}, not of {Path(run_dir).resolve().name}: "
        "choose another --out, or pass --overwrite to replace everything in it"
    )


def scored_identity(model: dict[str, Any]) -> tuple[str, str | None, int | None]:
    """What an evaluation `summary.json`'s `model` scored: `(kind, fingerprint, step)`, kind
    `run` (a run directory or one of its checkpoints), `export` (a directory with an
    `export.json`) or `other` (a teacher, a hub model, ...)."""
    from student.checkpoint import step_of

    spec = model.get("spec")
    if not isinstance(spec, str) or not spec:
        return "other", None, None
    if model.get("kind") == "student" or (Path(spec) / "config.yaml").is_file():
        checkpoint = model.get("checkpoint")
        try:
            step = step_of(Path(checkpoint)) if isinstance(checkpoint, str) else None
        except ValueError:
            step = None
        return "run", run_fingerprint(Path(spec)), step
    record = read_export_record(Path(spec))
    if record is not None:
        return "export", record["run_fingerprint"], record.get("step")
    return "other", None, None


def check_scored(summary: dict[str, Any], where: Path, run_dir: Path, step: int) -> None:
    """Refuse an evaluation (`summary.json` at `where`) that did not score run `run_dir`'s
    checkpoint at `step` (or an export of it): one line naming both models."""
    model = summary.get("model") or {}
    kind, fingerprint, scored_step = scored_identity(model)
    if kind != "other" and fingerprint == run_fingerprint(run_dir) and scored_step == step:
        return
    name = model.get("name") or model.get("spec") or "?"
    if kind == "other":
        scored = f"{name} ({model.get('spec') or 'no spec recorded'})"
    else:
        scored = f"{name} ({model.get('spec')}, step {scored_step or '?'})"
    this = f"{Path(run_dir).resolve().name} at step {step}"
    raise ValueError(
        f"--eval {where} scored {scored}, not this export ({this}): pass an `evaluation run "
        f"--model {Path(run_dir) / 'checkpoints' / checkpoint_name(step)}` directory"
    )
