"""How usable a label column's maps are: flag counts over its shards, and the ONE rule "too many
unusable maps" that `pipeline verify` and `student train` apply (`pipeline status` shows it).

A map is unusable when it teaches nothing (`record.map_unusable`: no finite value, or one value
everywhere). A column whose unusable maps are more than `max_unusable` (a fraction of its maps,
`DEFAULT_MAX_UNUSABLE` unless the user sets `pipeline verify --max-unusable` or
`student train --set data.max_unusable=...`) is bad: its teacher's output is broken (NaN in its
weights, a precision that overflows, ...), and training on it would learn nothing.

Counts come from the manifest's shard entries (`maps`, `map_flags`, `unusable_maps`, `flags`);
entries written before map counts were recorded are listed as `unknown` and not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.labels.record import ERROR_FLAG

DEFAULT_MAX_UNUSABLE = 0.5
"""The largest fraction of a column's maps that may be unusable (the rule's default threshold)."""
UNUSABLE = "no finite value, or one value everywhere"
"""What an unusable map is, in the words the messages use."""


def check_max_unusable(value: float, option: str = "--max-unusable") -> float:
    """The threshold, checked: a fraction between 0 and 1."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{option} must be a fraction between 0 and 1, got {value}")
    return float(value)


@dataclass
class MapCounts:
    """Maps and images (keys) per flag over some shards of one column."""

    maps: int = 0
    unusable: int = 0
    map_flags: Counter[str] = field(default_factory=Counter)
    images: int = 0
    image_flags: Counter[str] = field(default_factory=Counter)
    unusable_shards: list[str] = field(default_factory=list)
    """Shards holding unusable maps, in the order added."""
    unknown: list[str] = field(default_factory=list)
    """Shards whose entries predate map counts (not counted)."""

    @classmethod
    def of(cls, entries: Mapping[str, Mapping[str, Any]]) -> MapCounts:
        """Counts over `{shard name: manifest shard entry}`."""
        counts = cls()
        for name, entry in entries.items():
            counts.add(name, entry)
        return counts

    def add(self, name: str, entry: Mapping[str, Any]) -> None:
        """Count one shard entry (a `ShardSummary.manifest_entry()`)."""
        if "maps" not in entry:
            self.unknown.append(name)
            return
        self.maps += int(entry["maps"])
        self.unusable += int(entry.get("unusable_maps", 0))
        self.map_flags.update({k: int(v) for k, v in entry.get("map_flags", {}).items()})
        self.images += int(entry.get("count", 0))
        self.image_flags.update({k: int(v) for k, v in entry.get("flags", {}).items()})
        if entry.get("unusable_maps"):
            self.unusable_shards.append(name)

    def too_many_unusable(self, max_unusable: float = DEFAULT_MAX_UNUSABLE) -> bool:
        """The rule: more than `max_unusable` of the maps are unusable."""
        return self.maps > 0 and self.unusable > check_max_unusable(max_unusable) * self.maps

    def describe(self) -> str:
        """'nan 77 of 77 maps (12 of 12 images), flat 77 of 77 maps (12 of 12 images)', or
        'none' (the key flag `error` is not a map's: failed images are counted apart)."""
        parts = [
            f"{flag} {n} of {self.maps} maps ({self.image_flags.get(flag, 0)} of "
            f"{self.images} images)"
            for flag, n in sorted(self.map_flags.items())
            if flag != ERROR_FLAG and n
        ]
        return ", ".join(parts) or "none"

    def describe_unusable(self) -> str:
        """'77 of 77 maps (100%) unusable (no finite value, or one value everywhere)'."""
        share = f" ({self.unusable / self.maps:.0%})" if self.maps else ""
        return f"{self.unusable} of {self.maps} maps{share} unusable ({UNUSABLE})"
