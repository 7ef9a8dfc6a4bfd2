"""`pipeline verify`: re-read every shard and prove it is what the manifests say.

Checks, per image shard: checksum, keys, plan file checksum and plan keys, the camera sidecar's
checksum where dataset.json lists one (`camera_sha256`); the counts dataset.json
records (`num_samples`, `num_listed`, `num_rejected`, `num_skipped`) against the shards and its own
lists; that a world column was labelled from the split the dataset was prepared from; per label
shard of each column: the rule every command applies (`LabelColumn.check_shard`: done, present
with the recorded size, labelled from the current images), then checksum, plan hash, keys equal
to the image shard in the same order, and a full decode of every stored map. Any single flipped
byte in a shard is caught by the checksums.

A label shard the manifest records as failed is a problem too (with its recorded error), and so is
a column whose maps are mostly unusable (`pipeline.labels.quality`: more than `max_unusable` of
its maps hold no finite value or one value everywhere; its teacher's output is broken). Every
label problem names the `labelgen run ... --redo SHARD` command that relabels the shard, built
from the column's manifest; an image or plan problem says how to restore or re-create the file
(`pipeline prepare` with the inputs and settings dataset.json records) and which relabelling the
columns then need. Shards a column has not labelled yet (no manifest entry) are not corruption:
they are listed as information and do not fail the verification, as are flagged maps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.dataset import DatasetInfo, ShardInfo, load_dataset
from pipeline.dataset.camera import load_camera_shard
from pipeline.dataset.plan import load_plan_shard
from pipeline.dataset.prepare import PrepareSettings
from pipeline.images.shards import shard_keys
from pipeline.labels.column import FAILED, NOT_LABELLED, LabelColumn
from pipeline.labels.commands import relabel_command, shard_ranges
from pipeline.labels.manifest import shard_checksum
from pipeline.labels.quality import DEFAULT_MAX_UNUSABLE, check_max_unusable
from pipeline.labels.store import open_reader
from pipeline.toolkit.hashing import sha256_file
from pipeline.toolkit.progress import Progress, progress_bar
from pipeline.world.origin import column_origin_problem


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # information, not problems (not labelled)
    checked: int = 0  # shards checked (image and label)
    maps: int = 0  # label maps decoded

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """The notes, then the verdict line."""
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        line = f"verify: {self.checked} shards, {self.maps} label maps decoded: {verdict}"
        return "\n".join([*self.notes, line])


def _guarded(
    report: VerifyReport,
    where: Path,
    check: Callable[..., None],
    *args: Any,
    fix: Callable[[], str] | None = None,
) -> None:
    """Run one check; any exception becomes a problem naming the file (and `fix()`, what repairs
    it, built only then), never a crash."""
    try:
        check(*args)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the scan
        report.problems.append(f"{where}: {e}" + (f"; {fix()}" if fix else ""))


def _check_images(info: DatasetInfo, shard: ShardInfo, keys: dict[int, list[str]]) -> None:
    path = info.layout.image_shard(shard.index)
    if sha256_file(path) != shard.image_sha256:
        raise ValueError("checksum differs from dataset.json: the image shard is corrupt")
    keys[shard.index] = shard_keys(path)
    if len(keys[shard.index]) != shard.count:
        raise ValueError(f"{len(keys[shard.index])} keys, dataset.json says {shard.count}")


def _check_plan(info: DatasetInfo, shard: ShardInfo, keys: dict[int, list[str]]) -> None:
    plan_path = info.layout.plan_shard(shard.index)
    if sha256_file(plan_path) != shard.plan_sha256:
        raise ValueError("checksum differs from dataset.json: the plan is corrupt")
    if shard.index in keys and list(load_plan_shard(plan_path)) != keys[shard.index]:
        raise ValueError("keys differ from the image shard's")


def _check_camera(info: DatasetInfo, shard: ShardInfo, keys: dict[int, list[str]]) -> None:
    """The camera sidecar, when dataset.json lists one: present, its checksum, readable."""
    if not shard.camera_sha256:
        return
    path = info.layout.camera_shard(shard.index)
    if not path.is_file():
        raise ValueError("missing, but dataset.json lists it")
    if sha256_file(path) != shard.camera_sha256:
        raise ValueError("checksum differs from dataset.json: the camera shard is corrupt")
    load_camera_shard(path)


def _count_problems(info: DatasetInfo, keys: dict[int, list[str]]) -> list[str]:
    """Each count dataset.json records that differs from what the shards (keys read, else the
    shard's recorded count) and dataset.json's own lists hold."""
    raw, held = info.raw, sum(len(keys.get(s.index, [])) or s.count for s in info.shards)
    rejected = len(raw.get("rejected", []))
    skipped = raw.get("skipped") or {}
    actual = {
        "num_samples": (held, "images in the shards"),
        "num_rejected": (rejected, "entries under 'rejected'"),
        "num_listed": (held + rejected, "images in the shards and rejected"),
        "num_skipped": (
            sum((skipped.get("extension") or {}).values())
            + sum(int(skipped.get(k, 0)) for k in ("hidden", "linked_folders", "special")),
            "entries under 'skipped'",
        ),
    }
    return [
        f"{info.layout.dataset_json}: {name} is {raw[name]!r} but there are {n} {what}; the file "
        f"was edited or is corrupt: restore it, or re-create the dataset with "
        f"`{prepare_command(info)}`"
        for name, (n, what) in actual.items()
        if name in raw and raw[name] != n and (name != "num_skipped" or "skipped" in raw)
    ]


def prepare_command(info: DatasetInfo) -> str:
    """The `pipeline prepare` command that re-creates the dataset's image and plan shards: the
    inputs and the settings dataset.json records (those that differ from the defaults)."""
    recorded, default = _leaves(info.raw), _leaves(PrepareSettings().recorded())
    args = ["pipeline", "prepare"]
    for source in info.raw.get("inputs", []):
        args += ["--images", str(source)]
    args += ["--out", str(info.layout.root)]
    for f in dataclasses.fields(PrepareSettings):
        if f.name in default and recorded.get(f.name, default[f.name]) != default[f.name]:
            args += [f"--{f.name.replace('_', '-')}", str(recorded[f.name])]
    return shlex.join(args)


def _leaves(record: dict[str, Any]) -> dict[str, Any]:
    """`{"decode": {"min_side": 64}, ...}` -> `{"min_side": 64, ...}` (the settings' fields)."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        out.update(_leaves(value) if isinstance(value, dict) else {name: value})
    return out


def _image_fix(info: DatasetInfo, shard: ShardInfo, what: str) -> str:
    """What to do about a bad image or plan shard (`what`): restore or re-create it, and, when its
    images change, which relabelling each column needs."""
    text = (
        f"restore the {what} shard from a backup, or re-create it with `{prepare_command(info)}` "
        "(the same inputs and settings rewrite identical bytes while the input files are "
        "unchanged)"
    )
    columns = [LabelColumn(info, c) for c in info.layout.columns()]
    commands = []
    for column in columns:
        with contextlib.suppress(ValueError):  # a column without a readable manifest is reported
            commands.append(relabel_command(column, [shard.name]))
    if commands and what == "image":
        text += (
            f"; if its images are not the same bytes again, relabel shard {shard.name} of every "
            f"column made from it: {' ; '.join(commands)}"
        )
    return text


def _check_label_shard(
    path: Path, sha256: str, shard: ShardInfo, keys: list[str] | None, report: VerifyReport
) -> None:
    if shard_checksum(path) != sha256:
        raise ValueError("checksum differs from the manifest: the shard is corrupt")
    with open_reader(path, expected_plan_sha256=shard.plan_sha256) as reader:
        if keys is not None and list(reader.keys) != keys:
            raise ValueError("keys differ from the image shard (order or content)")
        for key in reader.keys:
            for name in reader.names(key):
                reader.read(key, name)
                report.maps += 1


def _open_column(info: DatasetInfo, name: str, report: VerifyReport) -> LabelColumn | None:
    """The column, or None after reporting a manifest that cannot be read or that was made for
    another crop plan (no shard of it can then be checked)."""
    column = LabelColumn(info, name)
    try:
        _ = column.suffix  # reads the manifest, checks its backend
    except ValueError as e:
        report.problems.append(str(e))
        return None
    if column.other_plan():
        command = relabel_command(column) + " --overwrite"
        report.problems.append(
            f"{column.manifest_path}: labels were made for another crop plan; relabel the "
            f"column: {command}"
        )
        return None
    return column


def _check_column(
    info: DatasetInfo,
    name: str,
    keys: dict[int, list[str]],
    report: VerifyReport,
    bar: Progress,
    max_unusable: float,
) -> None:
    column = _open_column(info, name, report)
    if column is None:
        bar.update(len(info.shards))
        return
    if wrong := column_origin_problem(info.raw, info.layout.root, column.manifest, name):
        report.problems.append(wrong)
    not_labelled = []
    for shard in info.shards:
        check = column.check_shard(shard)
        fix = functools.partial(_relabel, column, shard)
        if check.status == NOT_LABELLED:
            not_labelled.append(shard.name)
        elif check.status == FAILED:
            error = column.manifest.shards[shard.name].get("error") or "no error recorded"
            report.problems.append(
                f"{check.path}: shard {shard.name} of column {name!r} is recorded as "
                f"'failed' in the manifest ({error}); {fix()}"
            )
        elif not check.usable:  # the rule every command applies (`LabelColumn.check_shard`)
            report.checked += 1
            report.problems.append(f"{check.describe()}; {fix()}")
        else:
            report.checked += 1
            sha256 = column.manifest.shards[shard.name].get("sha256")
            _guarded(
                report,
                check.path,
                _check_label_shard,
                check.path,
                sha256,
                shard,
                keys.get(shard.index),
                report,
                fix=fix,
            )
        bar.update()
    if not_labelled:
        report.notes.append(
            f"{name}: shards {shard_ranges(not_labelled)} not labelled yet (not an error); "
            f"label them: {relabel_command(column)}"
        )
    _check_maps(column, report, max_unusable)


def _relabel(column: LabelColumn, shard: ShardInfo) -> str:
    return f"relabel it: {relabel_command(column, [shard.name])}"


def _check_maps(column: LabelColumn, report: VerifyReport, max_unusable: float) -> None:
    """The column's flagged maps as a note; too many unusable maps as a problem (the rule of
    `pipeline.labels.quality`, over the usable shards)."""
    counts = column.map_counts()
    problem = column.unusable_problem(max_unusable, counts=counts)
    if problem:  # names the flagged maps too
        report.problems.append(problem)
    elif counts.describe() != "none":
        report.notes.append(f"{column.name}: flagged maps: {counts.describe()}")
    if counts.unknown:
        report.notes.append(
            f"{column.name}: shards {shard_ranges(counts.unknown)} were labelled before map "
            "counts were recorded: their unusable maps are not counted"
        )


def verify_dataset(
    root: Path | str,
    columns: list[str] | None = None,
    progress: bool = True,
    max_unusable: float = DEFAULT_MAX_UNUSABLE,
) -> VerifyReport:
    """Verify image shards, plan shards and the chosen label columns (default: all); a column
    with more than `max_unusable` of its maps unusable is a problem."""
    check_max_unusable(max_unusable)
    info = load_dataset(Path(root).resolve())  # the commands it prints work from anywhere
    report = VerifyReport()
    known = info.layout.columns()
    for c in columns or []:
        if c not in known:
            report.problems.append(f"{info.layout.column_dir(c)}: no such column (have: {known})")
    chosen = [c for c in (columns or known) if c in known]
    keys: dict[int, list[str]] = {}
    total = len(info.shards) * (1 + len(chosen))
    with progress_bar(total, "verify", "shard", enabled=progress) as bar:
        for shard in info.shards:
            report.checked += 1
            for check, path, what in (
                (_check_images, info.layout.image_shard(shard.index), "image"),
                (_check_plan, info.layout.plan_shard(shard.index), "plan"),
                (_check_camera, info.layout.camera_shard(shard.index), "camera"),
            ):
                fix = functools.partial(_image_fix, info, shard, what)
                _guarded(report, path, check, info, shard, keys, fix=fix)
            bar.update()
        report.problems += _count_problems(info, keys)
        for column in chosen:
            _check_column(info, column, keys, report, bar, max_unusable)
    return report
