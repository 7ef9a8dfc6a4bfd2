"""A benchmark's one home is its loader class: the protocol's rules, the report titles and the
`evaluation` help are all read from `DATASET_LOADERS`, so registering a loader is the whole edit.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_eval_report import summary
from typer.testing import CliRunner

from evaluation import protocol
from evaluation.cli import app
from evaluation.datasets import (
    DATASET_LOADERS,
    DATASETS,
    BenchmarkDataset,
    BenchmarkSample,
    DatasetRules,
    dataset_title,
    parse_dataset_arg,
)
from evaluation.report import build_table, table_markdown

runner = CliRunner()
DATASET_COMMANDS = ("check-data", "predict", "score", "run", "crop-analysis")


def _help(*command: str) -> str:
    """`evaluation COMMAND --help`, lines unwrapped: whitespace collapsed, and a word that click
    broke at its hyphen ("iBims-" / "1") joined again."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"-\n\s+", "-", result.output).split())


def _loaders() -> list[type[BenchmarkDataset]]:
    return [DATASET_LOADERS.get(name) for name in DATASET_LOADERS.names()]


def test_the_ten_benchmarks_are_registered():
    """The package imports every module of evaluation/datasets/, each registering its loaders."""
    assert DATASET_LOADERS.names() == [
        "diode",
        "eth3d",
        "ibims",
        "kitti",
        "middlebury",
        "middlebury2014",
        "nyu",
        "scannet",
        "sintel",
        "world",
    ]


@pytest.mark.parametrize("name", DATASET_LOADERS.names())
def test_every_loader_carries_its_rules_title_and_layout(name):
    cls = DATASET_LOADERS.get(name)
    assert cls.name == name
    assert isinstance(cls.rules, DatasetRules) and cls.rules.name == name
    assert cls.rules.min_depth < cls.rules.max_depth
    assert cls.title.strip()
    assert cls.expected_layout().strip()
    assert DATASETS.get(name) is cls.rules
    assert dataset_title(name) == cls.title
    assert protocol.protocol_description(name, "depth")["dataset"]["name"] == name


def test_titles_are_distinct_and_reports_use_them():
    titles = [cls.title for cls in _loaders()]
    assert len(set(titles)) == len(titles)
    assert dataset_title("no-such-set") == "no-such-set"  # an old summary's unknown name
    assert (dataset_title("sintel"), dataset_title("ibims")) == ("Sintel", "iBims-1")


def test_app_help_lists_every_benchmark_with_its_layout():
    text = _help()
    for cls in _loaders():
        assert f"{cls.title}: {cls.name}" in text, cls.name
        assert " ".join(cls.expected_layout().split()) in text, cls.name


@pytest.mark.parametrize("command", DATASET_COMMANDS)
def test_dataset_help_names_every_benchmark(command):
    names = ", ".join(DATASET_LOADERS.names())
    assert f"NAME one of {names};" in _help(command)


# ------------------------------------------------------------- a benchmark added by one class


class ToyDataset(BenchmarkDataset):
    """A benchmark defined here, not in evaluation/: one 2x2 sample."""

    name = "toyset"
    title = "Toy Set"
    rules = DatasetRules("toyset", 0.5, 5.0, sharp_boundaries=False)
    options = {"split": None}

    @classmethod
    def expected_layout(cls) -> str:
        return "toy/<n>.png files"

    def __init__(self, path: str, **options: str) -> None:
        self.options_used = self.check_options(options)
        self.root = path

    def keys(self) -> list[str]:
        return ["a"]

    def load(self, key: str, rgb: bool = True) -> BenchmarkSample:
        depth = np.array([[0.1, 1.0], [2.0, 9.0]], np.float32)
        return BenchmarkSample(key, np.zeros((2, 2, 3), np.uint8) if rgb else None, depth)

    def describe(self) -> dict:
        return {"name": self.name, "root": self.root}


@pytest.fixture
def toyset():
    """`ToyDataset` registered for one test, then removed (the registry has no unregister)."""
    assert "toyset" not in DATASET_LOADERS
    DATASET_LOADERS.register("toyset")(ToyDataset)
    try:
        yield ToyDataset
    finally:
        del DATASET_LOADERS._factories["toyset"]


def test_a_registered_loader_is_a_benchmark_everywhere(toyset):
    assert "toyset" in DATASETS and "toyset" in DATASETS.names()
    assert protocol.DATASETS.get("toyset") is toyset.rules
    # the protocol scores with its rules: of 0.1, 1, 2, 9 m only 1 and 2 lie in (0.5, 5)
    gt = toyset("x").load("a").depth
    result = protocol.score(gt.copy(), gt, "toyset", "depth")
    assert result["valid_pixels"] == 2 and result["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert protocol.protocol_description("toyset", "depth")["dataset"]["max_depth"] == 5.0
    assert parse_dataset_arg("toyset=/data/toy,split=a.txt") == (
        "toyset",
        "/data/toy",
        {"split": "a.txt"},
    )
    table = build_table([summary("m", {"toyset": {"abs_rel": 0.1, "delta1": 0.9}})])
    assert table_markdown(table).splitlines()[0].startswith("| Method | Toy Set |")
    app_help = _help()
    assert "Toy Set: toyset=PATH[,split=...], PATH a directory or uncompressed .tar of" in app_help
    assert "toy/<n>.png files." in app_help
    for command in DATASET_COMMANDS:
        assert re.search(r"NAME one of [a-z0-9, ]*\btoyset\b", _help(command)), command


def test_an_unregistered_loader_leaves_rules_and_help(toyset):
    """The help is built from the registry at each run, not when evaluation.cli was imported."""
    assert "toyset" in _help("run")
    del DATASET_LOADERS._factories["toyset"]
    try:
        assert "toyset" not in _help("run") and "Toy Set" not in _help()
        with pytest.raises(ValueError, match="unknown benchmark dataset 'toyset'; valid: diode"):
            DATASETS.get("toyset")
        assert dataset_title("toyset") == "toyset"
    finally:
        DATASET_LOADERS.register("toyset")(ToyDataset)  # the fixture removes it
