"""`pipeline verify`: re-read every shard and prove it is what the manifests say.

Checks, per image shard: checksum, keys, plan file checksum and plan keys; per label shard of each
column: presence, checksum, plan hash, keys equal to the image shard in the same order, and a full
decode of every stored map. Any single flipped byte in a shard is caught by the checksums.

A label shard the manifest records as failed is a problem too (with its recorded error). Every
label problem names the `labelgen run ... --redo SHARD` command that relabels the shard, built
from the column's manifest. Shards a column has not labelled yet (no manifest entry) are not
corruption: they are listed as information and do not fail the verification.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.dataset import DatasetInfo, ShardInfo, load_dataset
from pipeline.dataset.plan import load_plan_shard
from pipeline.dataset.status import shard_ranges
from pipeline.images.shards import shard_keys
from pipeline.labels.manifest import made_from_other_images
from pipeline.labels.store import BACKENDS, open_reader, shard_checksum
from pipeline.toolkit.atomic import read_json
from pipeline.toolkit.hashing import sha256_file


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
    """Run one check; any exception becomes a problem naming the file (and `fix()`, the command
    that repairs it, built only then), never a crash."""
    try:
        check(*args)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the scan
        report.problems.append(f"{where}: {e}" + (f"; relabel it: {fix()}" if fix else ""))


def relabel_command(root: Path, column: str, manifest: dict, shards: list[str] | None) -> str:
    """The `labelgen run` command that (re)labels `shards` of a column (all missing ones when
    None), with the teacher, backend, codec, precision and batch size its manifest records."""
    weights = manifest.get("weights") or {}
    adapter, source = manifest.get("adapter"), weights.get("source")
    if adapter and source:
        options = (manifest.get("extra") or {}).get("options") or {}
        teacher = f"{column}={adapter}:{source}" + "".join(f",{k}={v}" for k, v in options.items())
    else:
        teacher = f"{column}=ADAPTER:SOURCE"
    args = ["labelgen", "run", "--dataset", str(root), "--teacher", teacher]
    if manifest.get("backend", "wds") != "wds":
        args += ["--format", manifest["backend"]]
    codec = (manifest.get("codec") or {}).get("name", "pcodec-f16")
    if codec != "pcodec-f16":
        args += ["--codec", codec]
    if manifest.get("precision", "bf16") != "bf16":
        args += ["--precision", manifest["precision"]]
    # The batch size the column's shards were labelled with (label bytes depend on it).
    entries = manifest.get("shards") or {}
    sizes = {e.get("batch_size") for e in entries.values() if e.get("status") == "done"}
    sizes.discard(None)
    if len(sizes) == 1:
        args += ["--batch-size", str(sizes.pop())]
    if shards:
        args += ["--redo", shard_ranges(shards)]
    return shlex.join(args)


def _check_images(info: DatasetInfo, shard: ShardInfo, keys: dict[int, list[str]]) -> None:
    path = info.layout.image_shard(shard.index)
    if sha256_file(path) != shard.image_sha256:
        raise ValueError("checksum differs from dataset.json: the image shard is corrupt")
    keys[shard.index] = shard_keys(path)
    if len(keys[shard.index]) != shard.count:
        raise ValueError(f"{len(keys[shard.index])} keys, dataset.json says {shard.count}")
    plan_path = info.layout.plan_shard(shard.index)
    if sha256_file(plan_path) != shard.plan_sha256:
        raise ValueError(f"{plan_path} checksum differs from dataset.json: the plan is corrupt")
    if list(load_plan_shard(plan_path)) != keys[shard.index]:
        raise ValueError(f"{plan_path} keys differ from the image shard's")


def _check_label_shard(
    path: Path, entry: dict, shard: ShardInfo, keys: list[str] | None, report: VerifyReport
) -> None:
    if not path.exists():
        raise FileNotFoundError("listed as done in the manifest but missing")
    if made_from_other_images(entry, shard.image_sha256):
        raise ValueError("labelled from other images: the image shard was replaced since")
    if shard_checksum(path) != entry.get("sha256"):
        raise ValueError("checksum differs from the manifest: the shard is corrupt")
    with open_reader(path, expected_plan_sha256=shard.plan_sha256) as reader:
        if keys is not None and list(reader.keys) != keys:
            raise ValueError("keys differ from the image shard (order or content)")
        for key in reader.keys:
            for name in reader.names(key):
                reader.read(key, name)
                report.maps += 1


def _check_column(
    info: DatasetInfo, column: str, keys: dict[int, list[str]], report: VerifyReport, bar: tqdm
) -> None:
    manifest_path = info.layout.manifest(column)
    manifest = read_json(manifest_path)
    root = info.layout.root
    if manifest.get("plan_sha256") != info.plan_hash:
        command = relabel_command(root, column, manifest, None) + " --overwrite"
        report.problems.append(
            f"{manifest_path}: labels were made for another crop plan; relabel the column: "
            f"{command}"
        )
        bar.update(len(info.shards))
        return
    suffix = BACKENDS.get(manifest.get("backend", "wds")).suffix
    entries = manifest.get("shards", {})
    not_labelled = []
    for shard in info.shards:
        entry = entries.get(shard.name)
        path = info.layout.label_shard(column, shard.index, suffix)
        fix = functools.partial(relabel_command, root, column, manifest, [shard.name])
        if not entry:
            not_labelled.append(shard.name)
        elif entry.get("status") == "done":
            report.checked += 1
            _guarded(
                report,
                path,
                _check_label_shard,
                path,
                entry,
                shard,
                keys.get(shard.index),
                report,
                fix=fix,
            )
        else:
            error = entry.get("error") or "no error recorded"
            report.problems.append(
                f"{path}: shard {shard.name} of column {column!r} is recorded as "
                f"{entry.get('status')!r} in the manifest ({error}); relabel it: {fix()}"
            )
        bar.update()
    if not_labelled:
        report.notes.append(
            f"{column}: shards {shard_ranges(not_labelled)} not labelled yet (not an error); "
            f"label them: {relabel_command(root, column, manifest, None)}"
        )


def verify_dataset(
    root: Path | str, columns: list[str] | None = None, progress: bool = True
) -> VerifyReport:
    """Verify image shards, plan shards and the chosen label columns (default: all)."""
    info = load_dataset(root)
    report = VerifyReport()
    known = info.layout.columns()
    for c in columns or []:
        if c not in known:
            report.problems.append(f"{info.layout.column_dir(c)}: no such column (have: {known})")
    chosen = [c for c in (columns or known) if c in known]
    keys: dict[int, list[str]] = {}
    total = len(info.shards) * (1 + len(chosen))
    with tqdm(total=total, desc="verify", unit="shard", disable=not progress) as bar:
        for shard in info.shards:
            report.checked += 1
            where = info.layout.image_shard(shard.index)
            _guarded(report, where, _check_images, info, shard, keys)
            bar.update()
        for column in chosen:
            _check_column(info, column, keys, report, bar)
    return report
