"""Per-key label records: statistics of each map and quality flags, as a small JSON dict.

A record looks like::

    {"maps": {"full": {"shape": [H, W], "min": .., "max": .., "mean": .., "nan": 0, "inf": 0,
                       "flat": false, "clipped": 0, "underflow": 0}, "r0.sc": {...}, ...},
     "flags": ["clipped", "nan"],      # sorted, unique; union over the maps, plus "error"
     "error": null,                    # or the reason the key has no (or partial) labels
     ...extra fields from the caller, e.g. "kind": "disparity"}

`min`/`max`/`mean` are over finite values (null when there are none). `clipped` counts finite
values beyond the storage dtype's range (stored as ± its max); `underflow` counts finite non-zero
values below its smallest normal number (stored with reduced relative precision; no flag).
`flat` is true when the finite values are all equal, or when there are none.

A map is *unusable* (`map_unusable`) when it teaches nothing: it holds no finite value (all NaN or
Inf) or one value everywhere. A map with some NaN or Inf pixels is flagged but still usable (the
student ignores non-finite label pixels). `pipeline.labels.quality` counts unusable maps per column.

Keys: 1-80 characters from `[A-Za-z0-9_-]`, starting with a letter or digit (they become tar
member prefixes and Zarr node names: no dots, no slashes). Map names: `full`, `r{k}.sc`,
`r{k}.t{j}` with non-negative integers k, j written without leading zeros.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from pipeline.dataset.layout import check_key

MAP_FLAGS = ("nan", "inf", "flat", "clipped")
ERROR_FLAG = "error"
RESERVED_FIELDS = ("maps", "flags", "error")
FLAT_RTOL = 1e-6
MAP_NAME_RE = re.compile(r"^(?:full|r(0|[1-9][0-9]*)\.(?:sc|t(0|[1-9][0-9]*)))$")


def check_map_name(name: str) -> str:
    if not isinstance(name, str) or not MAP_NAME_RE.match(name):
        raise ValueError(
            f"map name {name!r} is invalid: use 'full', 'r{{k}}.sc' or 'r{{k}}.t{{j}}' "
            "with non-negative integers k, j (e.g. 'r0.sc', 'r1.t3')"
        )
    return name


def map_kind(name: str) -> str:
    """'full', 'sc' (shared-context view) or 'tile' (local-global view)."""
    if name == "full":
        return "full"
    return "sc" if name.endswith(".sc") else "tile"


def map_sort_key(name: str) -> tuple[int, ...]:
    """Canonical order: full, r0.sc, r0.t0, r0.t1, ..., r0.t10, r1.sc, ..."""
    m = MAP_NAME_RE.match(name)
    if m is None:
        raise ValueError(f"map name {name!r} is invalid")
    if name == "full":
        return (0,)
    k, j = int(m.group(1)), m.group(2)
    return (1, k, 0, 0) if j is None else (1, k, 1, int(j))


def sorted_map_names(names: Iterable[str]) -> list[str]:
    return sorted(names, key=map_sort_key)


def map_stats(arr: np.ndarray, storage_dtype: np.dtype | type | str = np.float16) -> dict:
    """Statistics of one 2-D map (H, W) as it will be stored in `storage_dtype`."""
    arr = np.asarray(arr)
    finite_mask = np.isfinite(arr)
    finite = arr[finite_mask].astype(np.float64, copy=False)
    nan = int(np.count_nonzero(np.isnan(arr)))
    stats: dict[str, Any] = {
        "shape": [int(s) for s in arr.shape],
        "min": None,
        "max": None,
        "mean": None,
        "nan": nan,
        "inf": int(arr.size - finite.size - nan),
        "flat": True,
        "clipped": 0,
        "underflow": 0,
    }
    if finite.size == 0:
        return stats
    lo, hi = float(finite.min()), float(finite.max())
    info = np.finfo(np.dtype(storage_dtype))
    magnitude = np.abs(finite)
    stats.update(
        min=lo,
        max=hi,
        mean=float(finite.mean()),
        flat=bool(hi - lo <= FLAT_RTOL * max(abs(lo), abs(hi))),
        clipped=int(np.count_nonzero(magnitude > float(info.max))),
        underflow=int(
            np.count_nonzero((magnitude > 0) & (magnitude < float(info.smallest_normal)))
        ),
    )
    return stats


def map_flags(stats: dict) -> set[str]:
    """Flags raised by one map's statistics."""
    flags = {name for name in ("nan", "inf", "clipped") if stats[name]}
    if stats["flat"]:
        flags.add("flat")
    return flags


def map_unusable(stats: dict) -> bool:
    """Whether a map teaches nothing: no finite value (all NaN or Inf) or one value everywhere
    (both make `flat` true; see the module docstring)."""
    return bool(stats["flat"])


def build_record(
    maps_stats: dict[str, dict], error: str | None = None, extra: dict | None = None
) -> dict:
    """Assemble a record from per-map statistics (insertion order kept), an error and extras."""
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_FIELDS))
    if clash:
        raise ValueError(f"record_extra may not set the reserved fields {clash}")
    flags: set[str] = set()
    for stats in maps_stats.values():
        flags |= map_flags(stats)
    if error is not None:
        flags.add(ERROR_FLAG)
    return {**extra, "maps": dict(maps_stats), "flags": sorted(flags), "error": error}


def check_keys(keys: list[str]) -> list[str]:
    keys = [check_key(k) for k in keys]
    dupes = sorted(k for k, n in Counter(keys).items() if n > 1)
    if dupes:
        raise ValueError(f"keys of a shard must be unique; repeated: {dupes[:5]}")
    return keys


def as_map(key: str, name: str, arr: Any) -> np.ndarray:
    """Validate one map: a non-empty 2-D real array; float16/float32 are kept, others -> float32."""
    a = np.asarray(arr)
    if a.ndim != 2 or a.size == 0 or a.dtype.kind not in "fiu":
        raise ValueError(
            f"key {key!r}, map {name!r}: expected a non-empty 2-D float array (H, W), "
            f"got dtype {a.dtype} shape {a.shape}"
        )
    return a if a.dtype in (np.float16, np.float32) else a.astype(np.float32)
