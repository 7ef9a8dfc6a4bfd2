"""One label column `labels/<name>/` of a dataset: the contract between `labelgen` and `student`.

`LabelColumn(dataset, name)` holds the column's rules that more than one command needs:

- its manifest (`ColumnManifest`, read on first use; `reload()` reads it again);
- its identity: runs that write into one column must agree on what `identity.ColumnIdentity`
  declares (teacher weights, crop plan, codec, backend, precision, teacher options, input
  resampling; `same_identity`, which refuses otherwise);
- the path of shard i (`shard_path`), with the suffix of the column's backend;
- the ONE rule "shard i is usable for this dataset" (`check_shard`), which `labelgen run`,
  `student train` and `pipeline verify` all apply: the manifest lists the shard as done, its
  file (or directory) is there with the size the manifest recorded (summed over a directory's
  files, so a deleted Zarr chunk counts), and it was labelled from the image shard the dataset
  holds now (its image hash and its number of samples). Sizes only, no hashing: checksums are
  `pipeline verify`'s to compare; `other_plan` says whether the whole column was made for another
  crop plan (another dataset);
- how usable its maps are (`map_counts`, `unusable_problem`: the rule of `labels.quality` that
  `pipeline verify` and `student train` apply);
- recording a finished or a failed shard under the manifest lock (`record_done`,
  `record_failed`), creating or replacing the column's header (`open`).

The `labelgen run` commands that create or relabel it live in `pipeline.labels.commands`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.dataset.info import DatasetInfo, ShardInfo, as_dataset
from pipeline.labels.commands import label_command, relabel_command, shard_ranges
from pipeline.labels.identity import ColumnIdentity, changed, short
from pipeline.labels.manifest import (
    ColumnManifest,
    create_or_check,
    made_from_other_images,
    manifest_lock,
    record_shard,
    shard_entry,
    shard_nbytes,
)
from pipeline.labels.quality import DEFAULT_MAX_UNUSABLE, MapCounts, check_max_unusable
from pipeline.labels.store import BACKENDS

# What `check_shard` finds for one shard; only USABLE shards may be read or skipped.
USABLE = "usable"
NOT_LABELLED = "not labelled"  # no manifest entry yet
FAILED = "failed"  # recorded as failed
MISSING = "missing"  # done in the manifest, but the file is gone
RESIZED = "resized"  # done, but the file's size is not the recorded one
OTHER_IMAGES = "other images"  # done, but labelled from other images (replaced, another dataset)


@dataclass(frozen=True)
class ShardCheck:
    """What the usable rule found for one shard of a column."""

    shard: str
    """Shard name, e.g. '000001'."""
    path: Path
    """The shard's path in the column."""
    status: str
    """`USABLE`, `NOT_LABELLED`, `FAILED`, `MISSING`, `RESIZED` or `OTHER_IMAGES`."""
    size: int | None = None
    """Bytes on disk (when the file is there)."""
    recorded: int | None = None
    """Bytes the manifest recorded."""

    @property
    def usable(self) -> bool:
        return self.status == USABLE

    def describe(self) -> str:
        """Why a shard the manifest lists as done cannot be used, naming its file."""
        if self.status == MISSING:
            return f"{self.path} is listed as done in the manifest but missing"
        if self.status == RESIZED:
            return (
                f"{self.path} has {self.size} bytes, the manifest recorded {self.recorded} "
                "(truncated or replaced)"
            )
        if self.status == OTHER_IMAGES:
            return (
                f"{self.path} was labelled from other images than the dataset holds now (the "
                "image shard was replaced since, or the column was copied from another dataset)"
            )
        return f"{self.path}: {self.status}"


class LabelColumn:
    """Label column `name` of a dataset (a `DatasetInfo` or its directory); see the module."""

    def __init__(
        self,
        dataset: DatasetInfo | Path | str,
        name: str,
        manifest: ColumnManifest | None = None,
    ) -> None:
        """`manifest`: the column's manifest when the caller has just read it (else read on
        first use)."""
        self.info = as_dataset(dataset)
        self.name = name
        self.dir = self.info.layout.column_dir(name)  # checks the name
        self.manifest_path = self.info.layout.manifest(name)
        self._manifest = manifest

    def __repr__(self) -> str:
        return f"LabelColumn({str(self.info.layout.root)!r}, {self.name!r})"

    # -- the manifest --------------------------------------------------------------------------
    def reload(self) -> ColumnManifest | None:
        """Read the manifest again (None while the column has none)."""
        self._manifest = ColumnManifest.load_or_none(self.manifest_path)
        return self._manifest

    @property
    def manifest(self) -> ColumnManifest:
        """The manifest (read once); a `ValueError` naming the fix when the column has none."""
        if self._manifest is None and self.reload() is None:
            have = self.info.layout.columns()
            raise ValueError(
                f"label column {self.name!r} not found: {self.manifest_path} does not exist "
                f"(columns present: {have or 'none'}). Create it with `{label_command(self)}` "
                "or pick an existing column"
            )
        return self._manifest

    @property
    def suffix(self) -> str:
        """The shard suffix of the column's backend ('.tar', '.zarr')."""
        return self._suffix(self.manifest)

    def shard_path(self, index: int) -> Path:
        """Path of the column's shard `index` (a file, or a directory for Zarr)."""
        return self.info.layout.label_shard(self.name, index, self.suffix)

    def _suffix(self, manifest: ColumnManifest) -> str:
        if manifest.backend not in BACKENDS:
            raise ValueError(
                f"{self.manifest_path}: label backend {manifest.backend!r} is unknown; known: "
                f"{BACKENDS.names()}"
            )
        return BACKENDS.get(manifest.backend).suffix

    # -- identity ------------------------------------------------------------------------------
    def same_identity(self, requested: ColumnIdentity, overwrite: bool) -> bool:
        """Whether the column (read again) exists with the `requested` identity, compared in the
        fields known before a teacher is loaded (`ColumnIdentity.differences`).

        A column made with another identity is refused with a `ValueError` that names what
        differs, unless `overwrite` (then False: none of its shards counts as done).
        """
        manifest = self.reload()
        if manifest is None:
            return False
        old = manifest.identity()
        diff = old.differences(requested, before_loading=True)
        if diff and not overwrite:
            details = "; ".join(
                f"{changed(k)} ({short(getattr(old, k))} there, {short(getattr(requested, k))} now)"
                for k in diff
            )
            raise ValueError(
                f"label column {manifest.column!r} ({self.manifest_path}) was made with "
                f"{details}; use a new teacher name, or --overwrite to relabel the column"
            )
        return not diff

    def open(self, provenance: dict[str, Any], overwrite: bool) -> bool:
        """Create or check the manifest header (`manifest.create_or_check`); with `overwrite`,
        replace a differing header and drop its shard entries (every shard is then relabelled).
        Returns whether a header was replaced."""
        try:
            self._manifest = create_or_check(self.dir, provenance)
            return False
        except ValueError:
            if not overwrite:
                raise
        with manifest_lock(self.dir):  # re-checked under the lock: another rank may have done it
            new = ColumnManifest.from_dict({**provenance, "shards": {}}, str(self.manifest_path))
            replaced = ColumnManifest.load(self.manifest_path).identity() != new.identity()
            if replaced:
                new.save(self.manifest_path)
        self.reload()
        return replaced

    # -- shards --------------------------------------------------------------------------------
    def check_shard(self, shard: ShardInfo) -> ShardCheck:
        """The one rule "shard i is usable for this dataset" (see the module docstring), against
        the manifest as last read."""
        return self._check(self.manifest, shard)

    def check_shards(self, names: set[str] | None = None) -> list[ShardCheck]:
        """`check_shard` for every shard of the dataset (or those in `names`), in order."""
        return [self.check_shard(s) for s in self.info.shards if names is None or s.name in names]

    def _check(self, manifest: ColumnManifest, shard: ShardInfo) -> ShardCheck:
        entry = manifest.shards.get(shard.name)
        path = self.info.layout.label_shard(self.name, shard.index, self._suffix(manifest))
        if entry is None:
            return ShardCheck(shard.name, path, NOT_LABELLED)
        if entry["status"] != "done":
            return ShardCheck(shard.name, path, FAILED)
        try:
            size = shard_nbytes(path)
        except OSError:
            return ShardCheck(shard.name, path, MISSING)
        recorded = entry.get("bytes")
        recorded = None if recorded is None else int(recorded)
        if recorded is not None and size != recorded:
            return ShardCheck(shard.name, path, RESIZED, size, recorded)
        other_count = int(entry.get("count", shard.count)) != shard.count
        if other_count or made_from_other_images(entry, shard.image_sha256):
            return ShardCheck(shard.name, path, OTHER_IMAGES, size, recorded)
        return ShardCheck(shard.name, path, USABLE, size, recorded)

    def other_plan(self) -> bool:
        """Whether the column was made for another crop plan than the dataset's (another
        dataset, or the dataset prepared again with other settings): none of its shards fits."""
        return self.manifest.plan_sha256 != self.info.plan_hash

    # -- how usable the maps are ---------------------------------------------------------------
    def map_counts(self, checks: list[ShardCheck] | None = None) -> MapCounts:
        """Maps and images per flag over the column's usable shards (`checks`: those of
        `check_shards()`, when the caller has them)."""
        checks = self.check_shards() if checks is None else checks
        return MapCounts.of({c.shard: self.manifest.shards[c.shard] for c in checks if c.usable})

    def unusable_problem(
        self,
        max_unusable: float = DEFAULT_MAX_UNUSABLE,
        option: str = "--max-unusable",
        counts: MapCounts | None = None,
    ) -> str | None:
        """The rule of `labels.quality`: None while at most `max_unusable` of the maps are
        unusable, else a one-line problem naming the column, its teacher, the shards and the
        fix (`option`: the flag, or the `--set` key, that sets the threshold)."""
        check_max_unusable(max_unusable, option)
        counts = self.map_counts() if counts is None else counts
        if not counts.too_many_unusable(max_unusable):
            return None
        m, shards = self.manifest, sorted(counts.unusable_shards)
        value = f"{max_unusable:g}"
        setting = f"{option} {value}" if option.startswith("-") else f"--set {option}={value}"
        return (
            f"label column {self.name!r} (teacher {m.adapter}:{m.weights.get('source')}; "
            f"{self.manifest_path}): {counts.describe_unusable()} in shards "
            f"{shard_ranges(shards)}, more than the {max_unusable:.0%} allowed "
            f"({setting}); flagged maps: "
            f"{counts.describe()}. The teacher's output is broken: check its checkpoint and "
            f"precision, then relabel: {relabel_command(self, shards)} --overwrite"
        )

    def record_done(self, shard: ShardInfo, entry: dict[str, Any]) -> None:
        """Record a published shard (`ShardSummary.manifest_entry()` plus extras) as done."""
        self._manifest = record_shard(self.dir, shard.name, entry)

    def record_failed(self, shard: ShardInfo, error: str) -> bool:
        """Record a shard as failed, unless the manifest holds it as done and usable: a failed
        `--redo`, or a worker that lost its claim while another finished the shard, leaves the
        published labels valid, and they must stay usable. Checked and written under one hold of
        the manifest lock. Returns False when the done labels were kept."""
        entry = shard_entry("failed", error=error)
        with manifest_lock(self.dir):
            manifest = self.reload()
            if manifest is None:
                raise ValueError(f"{self.manifest_path} does not exist; open the column first")
            if self._check(manifest, shard).usable:
                return False
            manifest.shards[shard.name] = entry
            manifest.save(self.manifest_path)
        return True

    def clear_stale_temporaries(self, shard: ShardInfo) -> None:
        """A killed run leaves hidden temporaries of the shard it was writing; drop them."""
        for tmp in self.dir.glob(f".{shard.name}.*.tmp"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
