"""Loaders of the zero-shot depth benchmarks for the evaluation stage.

Users point at data they already have, in the preprocessed layout Marigold distributes (a
directory or an uncompressed tar): `open_dataset("nyu=/data/nyu_labeled_extracted.tar")`.
`sintel`, `ibims` and `middlebury2014` read their authors' own release layouts (sets with sharp
ground-truth edges). `middlebury` is built in. `check_data` validates a dataset before a long
evaluation run.
"""

from evaluation.datasets import (  # noqa: F401 (registers the loaders)
    builtin,
    ibims,
    layouts,
    middlebury2014,
    sintel,
    world,
)
from evaluation.datasets.api import check_data, check_sample, open_dataset, parse_dataset_arg
from evaluation.datasets.base import (
    DATASET_LOADERS,
    BenchmarkDataset,
    BenchmarkSample,
    DatasetError,
)
from evaluation.datasets.layouts import kitti_benchmark_crop

__all__ = [
    "DATASET_LOADERS",
    "BenchmarkDataset",
    "BenchmarkSample",
    "DatasetError",
    "check_data",
    "check_sample",
    "kitti_benchmark_crop",
    "open_dataset",
    "parse_dataset_arg",
]
