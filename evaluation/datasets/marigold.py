"""The generic loader of Marigold's preprocessed benchmark archives (directory or plain tar).

Which samples, in this order:
1. `split=FILE`: exactly the lines of that list (Marigold keeps them in its repository under
   `data_split/<name>/`). Its paths are relative to the dataset root; every listed file must
   exist.
2. Else a split list found inside the dataset: the `*.txt` files at the top of the archive or
   of the dataset root are read, and those whose every line has the layout's columns and
   starts with a path of the layout's RGB pattern count as split lists. One such file is used;
   several are an error asking for `split=FILE`; none falls through to discovery.
3. Else discovery: every file matching the layout's RGB pattern, sorted, paired with its
   ground truth by name.

The dataset root is the one folder that holds the layout's RGB paths: the archive's top, or
a folder inside it (`nyuv2/test/...`, DIODE's `val/indoors/...`); RGB files of the layout in
two different folders are an error. Split paths are tried relative to that root, then to its
parents. Keys are RGB paths relative to the root, without extension, so they are the same
whichever of the three ways listed the samples.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluation.datasets.archive import Archive, open_archive
from evaluation.datasets.base import BenchmarkDataset, BenchmarkSample, DatasetError
from evaluation.datasets.decode import decode_rgb, rgb_shape_only
from pipeline.dataset.camera import Intrinsics

MAX_SPLIT_BYTES = 16 << 20
SHOWN = 5  # missing files listed in an error


@dataclass(frozen=True)
class Entry:
    """One sample: its key and the archive names of its files."""

    key: str
    rgb: str
    depth: str
    mask: str | None = None


def _clean(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


def _data_lines(text: str) -> list[tuple[int, list[str]]]:
    """`(line number, fields)` of the non-empty, non-comment lines."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append((number, line.split()))
    return rows


class MarigoldDataset(BenchmarkDataset):
    """A benchmark in Marigold's preprocessed layout; subclasses describe the layout."""

    archive_name: ClassVar[str] = ""
    """The file Marigold distributes, for messages."""
    rgb_pattern: ClassVar[str] = ""
    """Regex of an RGB path relative to the dataset root (named groups feed `partners`)."""
    rgb_hint: ClassVar[str] = ""
    split_hint: ClassVar[str] = "RGB DEPTH"
    split_columns: ClassVar[int] = 2
    skip_missing_gt: ClassVar[bool] = False
    """KITTI: an RGB file without ground truth is skipped (and counted), not an error."""
    expected_count: ClassVar[int] = 0
    options = {"split": None}

    def __init__(self, path: str, **options: str) -> None:
        self.options_used = self.check_options(options)
        self.root = str(path)
        self.archive: Archive = open_archive(path, self.expected_layout())
        self._rx = re.compile(r"(?:^|/)(?P<rel>" + self.rgb_pattern + r")$")
        names = self.archive.names()
        self.prefix = self._pattern_prefix(names)
        rows, self.split_source, self.split_origin = self._split_rows(names)
        self.skipped: list[dict[str, str]] = []
        entries = self._discover(names) if rows is None else self._from_split(rows, names)
        entries = self.select(entries)
        if not entries:
            raise DatasetError(f"{self.root}: no samples; expected {self.expected_layout()}")
        self._entries = {e.key: e for e in entries}
        self._keys = [e.key for e in entries]

    @classmethod
    def expected_layout(cls) -> str:
        return f"{cls.rgb_hint} files (the layout of Marigold's {cls.archive_name})"

    # --- hooks of the layouts -----------------------------------------------------------

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        """Candidate ground-truth paths (and mask paths, or None) of a discovered RGB path."""
        raise NotImplementedError

    def split_paths(self, fields: list[str]) -> tuple[str, str | None, str | None]:
        """`(rgb, depth or None = no ground truth, mask)` paths of one split line."""
        return fields[0], fields[1], None

    def select(self, entries: list[Entry]) -> list[Entry]:
        """Entries kept under the options (DIODE's subset); all by default."""
        return entries

    def expected(self) -> int:
        return self.expected_count

    def make_sample(self, entry: Entry, rgb: np.ndarray) -> BenchmarkSample:
        """The sample of `entry`, given its decoded RGB image."""
        raise NotImplementedError

    def prepare_rgb(self, entry: Entry, rgb: np.ndarray) -> np.ndarray:
        """The image as `load` returns it (KITTI crops); unchanged by default."""
        return rgb

    def intrinsics(self, entry: Entry, height: int, width: int) -> Intrinsics | None:
        """The intrinsics of `entry`'s image as `load` returns it, given the size of the image
        file (`height` x `width`); None (unknown) by default."""
        return None

    # --- listing --------------------------------------------------------------------------

    def _pattern_prefix(self, names: list[str]) -> str | None:
        """The folder (ending in `/`, or "") that holds the layout's RGB paths, None if none."""
        found: Counter[str] = Counter()
        for name in names:
            m = self._rx.search(name)
            if m:
                found[name[: m.start("rel")]] += 1
        if len(found) > 1:
            where = ", ".join(repr(p) for p, _ in found.most_common(SHOWN))
            raise DatasetError(
                f"{self.root}: {self.rgb_hint} files under several folders ({where}); "
                "point at one dataset"
            )
        return next(iter(found), None)

    def _key(self, name: str) -> str:
        if self.prefix and name.startswith(self.prefix):
            name = name[len(self.prefix) :]
        return posixpath.splitext(name)[0]

    def _split_rows(self, names: list[str]) -> tuple[list | None, str, str]:
        """Rows of the split list in use, its location and where it came from."""
        split = self.options_used.get("split")
        if split:
            try:
                with open(split, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise DatasetError(
                    f"{split}: cannot read the split list ({e}); expected a text file of lines "
                    f"'{self.split_hint}'"
                ) from e
            return _data_lines(text), split, "option"
        if self.prefix is None:
            raise DatasetError(
                f"{self.root}: no {self.name} files found; expected {self.expected_layout()}"
            )
        return self._split_inside(names)

    def _split_inside(self, names: list[str]) -> tuple[list | None, str, str]:
        tops = {"", (self.prefix or "").rstrip("/")}
        found = []
        for name in names:
            if name.lower().endswith(".txt") and posixpath.dirname(name) in tops:
                rows = self._as_split(name)
                if rows is not None:
                    found.append((name, rows))
        if len(found) > 1:
            listed = ", ".join(self.archive.where(n) for n, _ in found)
            raise DatasetError(
                f"{self.root}: several split lists ({listed}); choose one with split=FILE"
            )
        if found:
            name, rows = found[0]
            return rows, self.archive.where(name), "dataset"
        return None, "discovered", "discovered"

    def _as_split(self, name: str) -> list | None:
        """The rows of a text file when it reads as a split list of this layout, else None."""
        if self.archive.size(name) > MAX_SPLIT_BYTES:
            return None
        try:
            rows = _data_lines(self.archive.read(name).decode("utf-8"))
        except UnicodeDecodeError:
            return None
        ok = all(len(f) >= self.split_columns and self._rx.search(_clean(f[0])) for _, f in rows)
        return rows if rows and ok else None

    def _discover(self, names: list[str]) -> list[Entry]:
        entries, missing = [], []
        for name in names:
            m = self._rx.search(name)
            if not m or name[: m.start("rel")] != self.prefix:
                continue
            depth_options, mask_options = self.partners(m)
            depth = self._first(depth_options)
            mask = self._first(mask_options) if mask_options is not None else None
            if depth is None and self.skip_missing_gt:
                rel = name[len(self.prefix or "") :]
                self.skipped.append({"entry": rel, "reason": "no ground-truth file"})
            elif depth is None or (mask_options is not None and mask is None):
                want = depth_options[0] if depth is None else (mask_options or [""])[0]
                missing.append(f"{self.archive.where(name)} (no {self.prefix}{want})")
            else:
                entries.append(Entry(self._key(name), name, depth, mask))
        if missing:
            raise DatasetError(
                f"{self.root}: {len(missing)} image{'s' * (len(missing) > 1)} without "
                f"ground truth, e.g. "
                f"{'; '.join(missing[:SHOWN])}; expected {self.expected_layout()}"
            )
        return entries

    def _first(self, candidates: list[str]) -> str | None:
        for rel in candidates:
            if f"{self.prefix}{rel}" in self.archive:
                return f"{self.prefix}{rel}"
        return None

    def _from_split(self, rows: list[tuple[int, list[str]]], names: list[str]) -> list[Entry]:
        bases = self._bases(rows, names)
        entries, missing, seen = [], [], set()
        for number, fields in rows:
            if len(fields) < self.split_columns:
                raise DatasetError(
                    f"{self.split_source} line {number}: {len(fields)} fields; expected "
                    f"'{self.split_hint}'"
                )
            rgb, depth, mask = self.split_paths(fields)
            if depth is None:
                reason = "no ground truth in the split list"
                self.skipped.append({"entry": _clean(rgb), "reason": reason})
                continue
            found = {p: self._resolve(p, bases) for p in (rgb, depth, mask) if p}
            absent = [p for p, name in found.items() if name is None]
            if absent:
                missing.extend(absent)
                continue
            key = self._key(found[rgb])
            if key in seen:
                raise DatasetError(f"{self.split_source} line {number}: {rgb} is listed twice")
            seen.add(key)
            entries.append(Entry(key, found[rgb], found[depth], found.get(mask or "")))
        if missing:
            raise DatasetError(
                f"{self.split_source}: {len(missing)} listed files are not in {self.root}, "
                f"e.g. {', '.join(missing[:SHOWN])}; expected paths relative to the dataset "
                f"root ({self.expected_layout()})"
            )
        return entries

    def _bases(self, rows: list[tuple[int, list[str]]], names: list[str]) -> list[str]:
        """Folders that split paths may be relative to: the dataset root and its parents."""
        prefix = self.prefix
        if prefix is None:  # no file of the layout's pattern: find the first listed file
            prefix = ""
            for _, fields in rows[:20]:
                rel = _clean(fields[0])
                hits = [n[: -len(rel)] for n in names if n == rel or n.endswith("/" + rel)]
                if hits:
                    prefix = min(hits, key=len)
                    self.prefix = prefix
                    break
        bases = [prefix]
        while prefix:
            prefix = posixpath.dirname(prefix.rstrip("/"))
            prefix = f"{prefix}/" if prefix else ""
            bases.append(prefix)
        return bases

    def _resolve(self, path: str, bases: list[str]) -> str | None:
        rel = _clean(path)
        for base in bases:
            if base + rel in self.archive:
                return base + rel
        return None

    # --- access ---------------------------------------------------------------------------

    def keys(self) -> list[str]:
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: int) -> BenchmarkSample:
        return self.load(self._keys[index])

    def read(self, name: str) -> bytes:
        return self.archive.read(name)

    def where(self, name: str) -> str:
        return self.archive.where(name)

    def _entry(self, key: str) -> Entry:
        entry = self._entries.get(key)
        if entry is None:
            raise DatasetError(f"{key!r} is not a sample of {self.name} at {self.root}")
        return entry

    def load(self, key: str, rgb: bool = True) -> BenchmarkSample:
        entry = self._entry(key)
        decode = decode_rgb if rgb else rgb_shape_only
        image = decode(self.read(entry.rgb), self.where(entry.rgb))
        sample = self.make_sample(entry, image)
        if sample.intrinsics is None:  # else make_sample read them (Middlebury's calib.txt)
            sample.intrinsics = self.intrinsics(entry, *image.shape[:2])
        if not rgb:
            sample.rgb = None
        return sample

    def load_rgb(self, key: str) -> np.ndarray:
        entry = self._entry(key)
        return self.prepare_rgb(entry, decode_rgb(self.read(entry.rgb), self.where(entry.rgb)))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": self.root,
            "layout": f"Marigold preprocessed {self.archive_name}: {self.rgb_hint}",
            "source": self.archive.kind,
            "prefix": self.prefix or "",
            "split": self.split_source,
            "split_origin": self.split_origin,
            "count": len(self._keys),
            "entries": len(self._keys) + len(self.skipped),
            "expected_count": self.expected(),
            "skipped": list(self.skipped),
            "options": dict(self.options_used),
            "inference_long_side": self.inference_long_side,
            "intrinsics_source": self.intrinsics_source,
        }
