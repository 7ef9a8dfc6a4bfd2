"""The model card's sections on what the student was trained on: its teachers and its dataset.

A run that recorded its inputs when it started (`RUN/inputs.json`: the dataset, the plan hash and
per label column its weights' source and sha256) is described from that record, which is what it
really trained on; an older run from the label columns' manifests as they are at export. No
absolute local path is written (the card is meant for the Hub): hub ids as they are, local
checkpoints and the dataset by their directory's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.dataset.info import DatasetInfo, load_dataset
from pipeline.labels.column import LabelColumn
from pipeline.model.source import is_local_dir, looks_like_path
from student.rundir import Job, RunDir

INPUTS_FILE = "inputs.json"
SHA_DIGITS = 12
"""The hex digits of a weights sha256 the card shows."""


def is_hub_id(source: str) -> bool:
    return not is_local_dir(source) and not looks_like_path(source)


def source_name(source: Any) -> str:
    """A checkpoint source as the card names it: a hub id, or a local directory's name."""
    text = str(source)
    if not text or text == "None":
        return "?"
    return text if is_hub_id(text) else f"{Path(text.rstrip('/')).name} (local)"


def read_inputs(run: RunDir) -> dict[str, Any] | None:
    """The run's `inputs.json`, or None for a run that did not record one."""
    path = run.root / INPUTS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not readable JSON ({e}); restore it from a backup") from e
    if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
        raise ValueError(f"{path}: no 'columns': not a run's inputs record; restore it")
    return data


def load_info(root: Path) -> tuple[DatasetInfo | None, str | None]:
    """The run's dataset, or why it cannot be read now."""
    name = Path(root).name
    if not Path(root).is_dir():
        return None, f"The dataset directory `{name}` did not exist when this model was exported"
    try:
        return load_dataset(root), None
    except (OSError, ValueError, KeyError) as e:
        return None, f"The dataset `{name}` could not be read when this model was exported ({e})"


def teachers_section(
    job: Job, info: DatasetInfo | None, problem: str | None, inputs: dict[str, Any] | None
) -> str:
    head = "## Teachers\n\n"
    if inputs is not None:
        return head + _recorded_teachers(job, inputs)
    if info is None:
        names = ", ".join(f"`{t}`" for t in job.teachers)
        return f"{head}Label columns {names}. {problem}: their provenance is not recorded here."
    rows = [
        "| column | teacher | adapter | weights | weights sha256 | output | precision | shards "
        "labelled |",
        "|---" * 8 + "|",
    ]
    for name in job.teachers:
        try:
            m = LabelColumn(info, name).manifest
        except (OSError, ValueError) as e:
            rows.append(f"| `{name}` | manifest unreadable: {e} |" + " |" * 6)
            continue
        done = sum(m.is_done(shard.name) for shard in info.shards)
        source = f"`{source_name(m.weights.get('source'))}`"
        if m.weights.get("commit"):
            source += f" (revision `{m.weights['commit']}`)"
        rows.append(
            f"| `{name}` | {m.teacher} | {m.adapter} | {source} | `{m.weights.get('sha256')}` | "
            f"{m.output_kind} ({m.invariance}) | {m.precision} | {done}/{len(info.shards)} |"
        )
    return head + "\n".join(rows)


def _recorded_teachers(job: Job, inputs: dict[str, Any]) -> str:
    """The teacher table of a run's `inputs.json`, in the run's teacher order."""
    columns = inputs["columns"]
    rows = ["| column | teacher | weights | weights sha256 |", "|---|---|---|---|"]
    for name in [*job.teachers, *sorted(set(columns) - set(job.teachers))]:
        entry = columns.get(name)
        if not isinstance(entry, dict):
            rows.append(f"| `{name}` | not recorded | – | – |")
            continue
        sha = str(entry.get("weights_sha256") or "?")[:SHA_DIGITS]
        source = source_name(entry.get("weights_source"))
        rows.append(f"| `{name}` | {entry.get('teacher') or '?'} | `{source}` | `{sha}` |")
    return (
        "Label columns as the run recorded them when it started (`inputs.json`; sha256 "
        f"shortened to {SHA_DIGITS} hex digits):\n\n" + "\n".join(rows)
    )


def dataset_section(
    job: Job, info: DatasetInfo | None, problem: str | None, inputs: dict[str, Any] | None
) -> str:
    name = Path(str((inputs or {}).get("dataset") or job.dataset)).name
    lines = [f"## Dataset\n\n- Directory: `{name}`"]
    if inputs is not None and inputs.get("plan_sha256"):
        lines.append(
            f"- Crop plan hash (recorded at the start of the run): `{inputs['plan_sha256']}`"
        )
    if info is None:
        lines.append(f"- {problem}: its image count and plan are not recorded here.")
        return "\n".join(lines)
    params = info.raw.get("plan_params", {})
    plan = ", ".join(f"{k} {v}" for k, v in params.items())
    lines.append(f"- Images: {info.num_samples} in {len(info.shards)} shards")
    if inputs is None or not inputs.get("plan_sha256"):
        lines.append(f"- Crop plan hash: `{info.plan_hash}`")
    lines.append(f"- Plan: {plan}")
    return "\n".join(lines)
