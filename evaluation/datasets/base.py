"""What every benchmark loader gives the evaluation stage: samples, keys, a description.

A `BenchmarkDataset` is one benchmark instance (say NYUv2 from the user's tar). It lists its
sample keys once, at construction, and decodes a sample on `load(key)`. Instances pickle
without open files, so torch `DataLoader` workers can share one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline.toolkit.registry import Registry


class DatasetError(ValueError):
    """Data that cannot be used as given: the message names the file (and archive) and what
    the loader expected there."""


@dataclass
class BenchmarkSample:
    """One benchmark image and its ground truth."""

    key: str
    """The RGB file's path relative to the dataset root, without extension."""
    rgb: np.ndarray | None
    """uint8 `[H, W, 3]`; None when loaded with `rgb=False`."""
    depth: np.ndarray
    """float32 `[H, W]` metric depth in metres; invalid pixels are 0 or +inf."""
    valid_mask: np.ndarray | None = None
    """bool `[H, W]` from the dataset's own mask file (DIODE), else None."""


class BenchmarkDataset:
    """Base class of the loaders in `DATASET_LOADERS`: one instance per benchmark instance.

    Subclasses set `name`, `inference_long_side`, `options` (option name -> allowed values,
    or None for free text) and implement `keys`, `load` and `describe`.
    """

    name: ClassVar[str] = ""
    inference_long_side: ClassVar[int | None] = None
    """The protocol's inference size: None = native resolution, else the long side in px."""
    needs_path: ClassVar[bool] = True
    options: ClassVar[dict[str, tuple[str, ...] | None]] = {}
    default_options: ClassVar[dict[str, str]] = {}

    root: str

    @classmethod
    def expected_layout(cls) -> str:
        """What the user must point at, for messages."""
        return ""

    def keys(self) -> list[str]:
        raise NotImplementedError

    def load(self, key: str, rgb: bool = True) -> BenchmarkSample:
        """The sample `key`; `rgb=False` leaves the image undecoded (`sample.rgb` is None),
        for scoring, which needs the ground truth only."""
        raise NotImplementedError

    def load_rgb(self, key: str) -> np.ndarray:
        """`load(key).rgb` without decoding the ground truth (for prediction)."""
        return self.load(key).rgb

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.keys())

    def __getitem__(self, index: int) -> BenchmarkSample:
        """Map-style access for torch `DataLoader` (use a collate_fn that keeps the list)."""
        return self.load(self.keys()[index])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self, 'root', '')!r})"

    @classmethod
    def check_options(cls, options: dict[str, str]) -> dict[str, str]:
        """Options merged over the defaults; unknown names or values raise `ValueError`."""
        for key, value in options.items():
            if key not in cls.options:
                valid = ", ".join(sorted(cls.options)) or "(none)"
                raise ValueError(f"unknown option {key!r} for {cls.name}; valid: {valid}")
            allowed = cls.options[key]
            if allowed is not None and value not in allowed:
                raise ValueError(
                    f"option {key}={value!r} for {cls.name}; valid values: {', '.join(allowed)}"
                )
            if value == "":
                raise ValueError(f"option {key!r} for {cls.name} needs a value: {key}=...")
        return {**cls.default_options, **options}


DATASET_LOADERS: Registry[type[BenchmarkDataset]] = Registry("benchmark dataset")
"""Benchmark name (the protocol's rules name) -> loader class, called as `cls(path, **options)`."""
