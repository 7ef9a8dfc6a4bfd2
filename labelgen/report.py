"""What one `labelgen run` did for one teacher column (`ColumnReport`), and its summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.labels.quality import MapCounts


@dataclass
class ColumnReport:
    column: str
    shards_done: list[str] = field(default_factory=list)
    shards_skipped: int = 0
    shards_failed: list[str] = field(default_factory=list)
    shards_held: list[str] = field(default_factory=list)  # claimed by another live worker
    held_expires_in: float = 0.0  # seconds until the last of those locks expires, unrefreshed
    images: int = 0
    views: int = 0
    failures: int = 0
    flags: dict[str, int] = field(default_factory=dict)  # images (keys) carrying each flag
    seconds: float = 0.0
    maps: MapCounts = field(default_factory=MapCounts)  # maps and images per flag
    # images and views of the shard being labelled: counted once the shard is done
    shard_images: int = field(default=0, repr=False)
    shard_views: int = field(default=0, repr=False)

    def counter(self, bar: Any) -> Callable[[int], None]:
        """A `label_shard` callback that counts each finished image and its views (for the
        summary once the shard is done, `add_shard`), and shows them on the progress `bar`."""

        def on_image(n_views: int) -> None:
            self.shard_images += 1
            self.shard_views += n_views
            bar.update()
            views = self.views + self.shard_views
            bar.set_status(f"{views / max(bar.elapsed, 1e-9):.1f} views/s")

        return on_image

    def add_shard(self, name: str, entry: dict[str, Any]) -> None:
        """Count a labelled shard from its manifest entry: its images and views, its failed
        images, the images and the maps of each flag."""
        self.shards_done.append(name)
        self.images, self.views = self.images + self.shard_images, self.views + self.shard_views
        self.shard_images = self.shard_views = 0
        self.failures += len(entry["failures"])
        for flag, n in entry["flags"].items():
            self.flags[flag] = self.flags.get(flag, 0) + n
        self.maps.add(name, entry)

    def add_failed(self, name: str, error: str) -> None:
        """Count a shard that failed: its error; its images and views are not labelled."""
        self.shards_failed.append(f"{name}: {error}")
        self.shard_images = self.shard_views = 0

    def summary(self) -> str:
        failed = "".join(f"\n  FAILED shard {f}" for f in self.shards_failed)
        if self.shards_held:
            failed += (
                f"\n  not complete yet: shards {', '.join(self.shards_held)} are held by other "
                f"workers (--claim); their locks expire within {_duration(self.held_expires_in)} "
                "if those workers stopped (refreshed while they run): run again then"
            )
        if not self.shards_done and not self.shards_failed and not self.shards_held:
            return f"{self.column}: nothing to do ({self.shards_skipped} shards already done)"
        rate = self.views / self.seconds if self.seconds else 0.0
        return (
            (
                f"{self.column}: labelled {len(self.shards_done)} shards ({self.images} images, "
                f"{self.views} views, {rate:.1f} views/s); {self.failures} failed images; "
                f"flagged maps: {self.maps.describe()}"
            )
            + self._unusable()
            + failed
        )

    def _unusable(self) -> str:
        """A warning line when the shards labelled now break the rule of
        `pipeline.labels.quality` (with its default threshold)."""
        if not self.maps.too_many_unusable():
            return ""
        return (
            f"\n  WARNING {self.maps.describe_unusable()}: the teacher's output is broken; "
            "`pipeline verify` fails this column and `student train` refuses it"
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
