"""`pipeline verify`: re-read every shard and prove it is what the manifests say.

Checks, per image shard: checksum, keys, plan file checksum and plan keys; per label shard of each
column: presence, checksum, plan hash, keys equal to the image shard in the same order, and a full
decode of every stored map. Any single flipped byte in a shard is caught by the checksums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.atomic import read_json
from pipeline.dataset import DatasetInfo, ShardInfo, load_dataset
from pipeline.hashing import sha256_file
from pipeline.images.shards import shard_keys
from pipeline.labels.store import BACKENDS, open_reader, shard_checksum
from pipeline.plan import load_plan_shard


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    checked: int = 0  # shards checked (image and label)
    maps: int = 0  # label maps decoded

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        return f"verify: {self.checked} shards, {self.maps} label maps decoded: {verdict}"


def _guarded(report: VerifyReport, where: Path, check: Callable[..., None], *args: Any) -> None:
    """Run one check; any exception becomes a problem naming the file, never a crash."""
    try:
        check(*args)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the scan
        report.problems.append(f"{where}: {e}")


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
    if manifest.get("plan_sha256") != info.plan_hash:
        report.problems.append(f"{manifest_path}: labels were made for another crop plan")
        bar.update(len(info.shards))
        return
    suffix = BACKENDS.get(manifest.get("backend", "wds")).suffix
    entries = manifest.get("shards", {})
    for shard in info.shards:
        entry = entries.get(shard.name)
        path = info.layout.label_shard(column, shard.index, suffix)
        if entry and entry.get("status") == "done":
            report.checked += 1
            _guarded(
                report, path, _check_label_shard, path, entry, shard, keys.get(shard.index), report
            )
        bar.update()


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
