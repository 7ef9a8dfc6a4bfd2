"""Benchmarks read in the layout of their authors' own release (not Marigold's preprocessing).

The file listing, split lists, directory-or-tar access and key rules are `MarigoldDataset`'s
(see `evaluation.datasets.marigold`); a release loader only names the archives it expects and
checks, after listing, the extra files its samples need (masks, calibration).
"""

from __future__ import annotations

import posixpath
from typing import Any, ClassVar

from evaluation.datasets.base import DatasetError
from evaluation.datasets.marigold import SHOWN, MarigoldDataset


class ReleaseDataset(MarigoldDataset):
    """A `MarigoldDataset` whose layout is the one its authors distribute."""

    release: ClassVar[str] = ""
    """The archives the authors distribute and how they unpack, for messages."""

    @classmethod
    def expected_layout(cls) -> str:
        return f"{cls.rgb_hint} files (the layout of {cls.release})"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "layout": f"{self.release}: {self.rgb_hint}"}

    def sibling(self, name: str, file_name: str) -> str:
        """The archive name of `file_name` in the folder of the archive file `name`."""
        return posixpath.join(posixpath.dirname(name), file_name)

    def require(self, names: list[str], what: str) -> None:
        """Every archive name in `names` exists, else a `DatasetError` listing the first missing
        ones (`what` says what they are, e.g. 'calibration files')."""
        missing = [self.archive.where(n) for n in names if n not in self.archive]
        if missing:
            raise DatasetError(
                f"{self.root}: {len(missing)} {what} missing, e.g. {'; '.join(missing[:SHOWN])}; "
                f"expected {self.expected_layout()}"
            )
