"""What a training run trained on: `RUN/inputs.json`, written when the run starts.

    {"dataset": "/datasets/sa1b-50k", "plan_sha256": "...",
     "images": {"000000": "<sha256 of the image shard>", ...},
     "columns": {"dav2-large": {"teacher": "depth-anything-v2", "weights_sha256": "...",
                                "weights_source": "<hub id or path>", "input_rule": {...},
                                "output_kind": "disparity", "invariance": "affine", ...}}}

A column's entry holds its manifest's `ColumnIdentity` (`pipeline.labels.identity`) plus its
teacher, weights source, input rule and invariance. `--resume` compares the dataset's inputs now
with the record and refuses a change, naming it (a column relabelled with other weights, another
crop plan, replaced image shards): what the run learnt so far came from the recorded ones. The
dataset's place (`dataset`) and a column's weights source are not part of the comparison, so a
dataset moved elsewhere, or weights moved to another path, resume (`--resume --dataset NEW`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pipeline.dataset import load_dataset
from pipeline.labels.column import LabelColumn
from pipeline.labels.identity import short
from pipeline.labels.manifest import ColumnManifest
from pipeline.toolkit.atomic import read_json, write_json
from student.rundir import Job, RunDir

NOT_COMPARED = frozenset({"weights_source", "backend"})
"""Column fields recorded but not compared: where the weights were read from, how labels are
stored (neither changes a label)."""
NEW_RUN = "or start a new run with another --out"


def column_entry(manifest: ColumnManifest) -> dict[str, Any]:
    """What `inputs.json` records of a label column (its manifest's header)."""
    identity = dataclasses.asdict(manifest.identity())
    return {
        "teacher": manifest.teacher,
        "weights_source": manifest.weights.get("source"),
        "input_rule": manifest.input_rule,
        "invariance": manifest.invariance,
        **identity,
    }


def run_inputs(dataset: Path, teachers: list[str]) -> dict[str, Any]:
    """The identity of the inputs a run of `teachers` on `dataset` reads (`inputs.json`)."""
    info = load_dataset(dataset)
    return {
        "dataset": str(dataset),
        "plan_sha256": info.plan_hash,
        "images": {shard.name: shard.image_sha256 for shard in info.shards},
        "columns": {name: column_entry(LabelColumn(info, name).manifest) for name in teachers},
    }


def _mapping_changes(what: str, before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The entries of `what` that differ, went missing or were added between two mappings."""
    said = []
    for key in sorted(set(before) | set(now)):
        if key not in now:
            said.append(f"{what} {key} missing")
        elif key not in before:
            said.append(f"{what} {key} added")
        elif before[key] != now[key]:
            said.append(f"{what} {key} {short(before[key])} → {short(now[key])}")
    return said


def column_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The compared fields in which a column's entry differs (fields recorded on both sides)."""
    return [
        f"{key} {short(before[key])} → {short(now[key])}"
        for key in before
        if key in now and key not in NOT_COMPARED and before[key] != now[key]
    ]


def changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between the inputs a run recorded and the current ones, one phrase each, the
    label columns first: e.g. `label column 'alpha' (weights_sha256 000000000000 → 3fa1...)`."""
    said = []
    for name, before in recorded.get("columns", {}).items():
        now = current["columns"].get(name, {})
        changed = column_changes(before, now)
        if changed:
            said.append(f"label column {name!r} ({'; '.join(changed)})")
    if recorded.get("plan_sha256") != current["plan_sha256"]:
        plan = f"{short(recorded.get('plan_sha256'))} → {short(current['plan_sha256'])}"
        said.append(f"the crop plan (plan_sha256 {plan})")
    images = _mapping_changes("shard", recorded.get("images", {}), current["images"])
    if images:
        said.append(f"the image shards ({'; '.join(images[:3])}{'; ...' if images[3:] else ''})")
    return said


def _fix(said: list[str]) -> str:
    if said[0].startswith("label column"):
        return "relabel it back with the recorded weights and settings (labelgen run --overwrite)"
    return "restore the dataset's images and plan"


def read_inputs(run: RunDir) -> dict[str, Any] | None:
    """The run's `inputs.json` (None for a run started before inputs were recorded)."""
    return read_json(run.inputs) if run.inputs.is_file() else None


def write_inputs(run: RunDir, inputs: dict[str, Any]) -> None:
    write_json(run.inputs, inputs)


def check_resume(run: RunDir, job: Job) -> tuple[dict[str, Any], bool]:
    """The inputs `job` resumes with, checked against `inputs.json`, and whether they must be
    recorded (the dataset moved, or the run has no record yet). A change is refused naming it
    and the fix; a dataset that is gone names `--resume --dataset NEW`."""
    started_with = str(run.read_config()["dataset"])
    moved = str(job.dataset) != started_with
    if not moved and not (Path(job.dataset) / "dataset.json").is_file():
        raise FileNotFoundError(
            f"{job.dataset}/dataset.json not found: the dataset of {run.root} moved or is gone; "
            "if it moved, pass its new place with `student train --out RUN --resume --dataset NEW`"
        )
    current = run_inputs(Path(job.dataset), job.teachers)
    recorded = read_inputs(run)
    if recorded is None:
        if moved:
            raise ValueError(
                f"{run.inputs} not found (the run started before inputs were recorded): --dataset "
                f"{job.dataset} cannot be checked against it; resume with {started_with}, {NEW_RUN}"
            )
        return current, True
    said = changes(recorded, current)
    if said and moved:
        raise ValueError(
            f"--dataset {job.dataset} does not hold the inputs of {run.root} ({', '.join(said)}; "
            f"recorded in {run.inputs}): pass the dataset the run trained on, {NEW_RUN}"
        )
    if said:
        raise ValueError(
            f"{run.root}: {', '.join(said)} changed since the run started (recorded in "
            f"{run.inputs.name}); {_fix(said)}, {NEW_RUN}"
        )
    return current, moved
