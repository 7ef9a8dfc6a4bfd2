"""Loaders of the zero-shot depth benchmarks for the evaluation stage.

Users point at data they already have, in the preprocessed layout Marigold distributes (a
directory or an uncompressed tar): `open_dataset("nyu=/data/nyu_labeled_extracted.tar")`.
`sintel`, `ibims` and `middlebury2014` read their authors' own release layouts (sets with sharp
ground-truth edges), `world` a split of the procedural world. `middlebury` is built in.
`check_data` validates a dataset before a long evaluation run.

Every module of this package is imported here, so a module that registers a loader
(`@DATASET_LOADERS.register(NAME)`) adds a benchmark: its rules, title and layout help come with
the class (`evaluation.datasets.base`).
"""

import importlib
import pkgutil

from evaluation.datasets.api import (
    benchmarks_help,
    check_data,
    check_sample,
    dataset_option_help,
    open_dataset,
    parse_dataset_arg,
)
from evaluation.datasets.base import (
    DATASET_LOADERS,
    DATASETS,
    BenchmarkDataset,
    BenchmarkSample,
    DatasetError,
    DatasetRules,
    dataset_title,
)
from evaluation.datasets.layouts import kitti_benchmark_crop

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registers the loaders it defines

__all__ = [
    "DATASETS",
    "DATASET_LOADERS",
    "BenchmarkDataset",
    "BenchmarkSample",
    "DatasetError",
    "DatasetRules",
    "benchmarks_help",
    "check_data",
    "check_sample",
    "dataset_option_help",
    "dataset_title",
    "kitti_benchmark_crop",
    "open_dataset",
    "parse_dataset_arg",
]
