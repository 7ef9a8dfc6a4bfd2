"""What every benchmark loader gives the evaluation stage: samples, keys, a description.

A `BenchmarkDataset` is one benchmark instance (say NYUv2 from the user's tar). It lists its
sample keys once, at construction, and decodes a sample on `load(key)`. Instances pickle
without open files, so torch `DataLoader` workers can share one.

The loader class is the benchmark's one home: besides reading the files it carries the
protocol's `rules` for the set, its `title` in reports and help, and `expected_layout`.
`DATASETS` (the rules by name), `dataset_title` and the `evaluation` help read them from
`DATASET_LOADERS`, so a benchmark is added by one module that registers its loader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline.dataset.camera import Intrinsics
from pipeline.toolkit.registry import Registry


class DatasetError(ValueError):
    """Data that cannot be used as given: the message names the file (and archive) and what
    the loader expected there."""


@dataclass(frozen=True)
class DatasetRules:
    """What the protocol (`evaluation.protocol`) does for one benchmark (lengths in metres)."""

    name: str
    min_depth: float
    """Valid ground truth is strictly greater than this."""
    max_depth: float
    """Valid ground truth is strictly smaller than this (inf: no upper bound)."""
    eval_crop: tuple[int, int, int, int] | None = None
    """(top, bottom, left, right) rows/cols kept for scoring (Eigen crops), or None."""
    clip: tuple[float, float] | None = None
    """Clip of the aligned depth; None = (min_depth, max_depth)."""
    range_from_mask_only: bool = False
    """DIODE: validity comes from the mask file alone, not from the depth range."""
    sharp_boundaries: bool = False
    """The ground truth has sharp depth edges (synthetic or structured-light sets): the protocol
    also scores `boundary_f1` (scale-invariant boundary F1, `evaluation.boundary`). Sets whose
    edges are smeared by sensor or interpolation (NYUv2, KITTI, ...) do not."""

    def depth_clip(self) -> tuple[float, float]:
        return self.clip if self.clip is not None else (self.min_depth, self.max_depth)


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
    intrinsics: Intrinsics | None = None
    """fx, fy, cx, cy in pixels of `rgb` as returned (crops and resizes applied; `cx = width / 2`
    is the image centre, `evaluation.datasets.intrinsics`), or None where unknown. The loader's
    `intrinsics_source` says where they come from."""


class BenchmarkDataset:
    """Base class of the loaders in `DATASET_LOADERS`: one instance per benchmark instance.

    Subclasses set `name` (the registered name), `title`, `rules`, `inference_long_side`,
    `options` (option name -> allowed values, or None for free text), say what the user points
    at in `expected_layout` and implement `keys`, `load` and `describe`.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    """How reports and help name the benchmark, e.g. "NYUv2"."""
    rules: ClassVar[DatasetRules]
    """What the protocol does on this benchmark; `rules.name` is `name`."""
    inference_long_side: ClassVar[int | None] = None
    """The protocol's inference size: None = native resolution, else the long side in px."""
    intrinsics_source: ClassVar[str] = "unknown"
    """Where the samples' `intrinsics` come from (a calibration file, published constants, ...)."""
    needs_path: ClassVar[bool] = True
    options: ClassVar[dict[str, tuple[str, ...] | None]] = {}
    default_options: ClassVar[dict[str, str]] = {}

    root: str

    @classmethod
    def expected_layout(cls) -> str:
        """What the user must point at, for messages and `evaluation --help`."""
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


class RulesByName:
    """Benchmark name -> `DatasetRules`, read from the loaders' `rules` at each lookup, so the
    rules of a registered loader need no other entry. `get` of an unknown name raises the
    registry's `ValueError`, listing the valid names. The loaders register when the package
    `evaluation.datasets` is imported, which importing any of its modules does first."""

    def __init__(self, loaders: Registry[type[BenchmarkDataset]]) -> None:
        self.loaders = loaders

    def get(self, name: str) -> DatasetRules:
        return self.loaders.get(name).rules

    def names(self) -> list[str]:
        return self.loaders.names()

    def __contains__(self, name: object) -> bool:
        return name in self.loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


DATASETS = RulesByName(DATASET_LOADERS)
"""The protocol's rules of every registered benchmark (also `evaluation.protocol.DATASETS`)."""


def dataset_title(name: str) -> str:
    """The benchmark's title for tables and help ("NYUv2"); a name no loader has (in an older
    summary) is its own title."""
    return DATASET_LOADERS.get(name).title if name in DATASET_LOADERS else name
