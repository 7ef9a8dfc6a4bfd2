"""Tests of the paper-layout result tables (evaluation/report.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from evaluation.report import (
    build_table,
    load_summaries,
    rank_column,
    report_markdown,
    table_markdown,
)
from evaluation.report_files import write_report

# Paper Table 4 (AbsRel, δ1) in the order NYUv2, KITTI, DIODE, ScanNet, ETH3D.
TABLE4 = {
    "DepthAnything v2": [
        (0.045, 0.979),
        (0.074, 0.946),
        (0.262, 0.754),
        (0.042, 0.978),
        (0.131, 0.865),
    ],
    "Genpercept(Disparity)": [
        (0.058, 0.969),
        (0.080, 0.934),
        (0.226, 0.741),
        (0.063, 0.960),
        (0.096, 0.959),
    ],
    "Ours": [(0.043, 0.981), (0.077, 0.945), (0.298, 0.756), (0.042, 0.979), (0.065, 0.983)],
}
# Shuffled on purpose: the table must put them in the paper's order.
DATASETS = ("kitti", "nyu", "eth3d", "diode", "scannet")
PAPER = ("nyu", "kitti", "diode", "scannet", "eth3d")


def summary(
    name: str, results: dict[str, dict], score_space: str = "depth", pred_space: str = "disparity"
) -> dict:
    """A summary.json as `evaluation run` writes it; `results` maps dataset → metrics."""
    datasets = {}
    for dataset, metrics in results.items():
        protocol = {
            "pred_space": pred_space,
            "alignment": f"least squares scale and shift in {pred_space} space",
            "score_space": score_space,
        }
        counts = {"samples": 10, "scored": 9, "empty_mask": 1, "degenerate_fit": 0}
        datasets[dataset] = {**metrics, **counts, "protocol": protocol}
    return {
        "schema": 1,
        "model": {
            "name": name,
            "spec": f"x:/ckpt/{name}",
            "kind": "teacher",
            "pred_space": pred_space,
        },
        "settings": {"score_space": score_space, "processing_res": None},
        "versions": {"torch": "2.4", "project": "0.1.0"},
        "datasets": datasets,
    }


def table4_summaries(**kwargs) -> list[dict]:
    out = []
    for name, pairs in TABLE4.items():
        by_dataset = dict(zip(PAPER, pairs, strict=True))
        results = {
            d: dict(zip(("abs_rel", "delta1"), by_dataset[d], strict=True)) for d in DATASETS
        }
        out.append(summary(name, results, **kwargs))
    return out


def write_dirs(tmp_path: Path, summaries: list[dict]) -> list[Path]:
    dirs = []
    for i, s in enumerate(summaries):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(s))
        dirs.append(d)
    return dirs


def test_table4_average_ranks_and_layout(tmp_path):
    table = build_table(load_summaries(write_dirs(tmp_path, table4_summaries())))
    assert table.methods == list(TABLE4)
    assert [d for d, _ in table.columns[::2]] == list(PAPER)
    assert [f"{r:.1f}" for r in table.avg_rank] == ["1.9", "2.6", "1.4"]
    md = table_markdown(table)
    lines = md.splitlines()
    assert lines[0].startswith("| Method | NYUv2 |  | KITTI |  | DIODE |  | ScanNet |  | ETH3D |")
    assert lines[0].endswith("| Avg. Rank |")
    assert lines[2].startswith("|  | AbsRel↓ | δ1↑ | AbsRel↓ | δ1↑")
    assert lines[3].endswith("| 1.9 |") and lines[5].endswith("| 1.4 |")


def test_bold_and_underline_placement():
    table = build_table(table4_summaries())
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ")[1:-1]
        for line in table_markdown(table).splitlines()[3:]
    }
    dav2, gen, ours = rows["DepthAnything v2"], rows["Genpercept(Disparity)"], rows["Ours"]
    # NYUv2 AbsRel: Ours best, DAv2 second; KITTI AbsRel: DAv2 best, Ours second.
    assert ours[0] == "**0.043**" and dav2[0] == "<u>0.045</u>" and gen[0] == "0.058"
    assert dav2[2] == "**0.074**" and ours[2] == "<u>0.077</u>" and gen[2] == "0.080"
    # DIODE AbsRel: Genpercept best. ETH3D δ1: Ours best, Genpercept second.
    assert gen[4] == "**0.226**" and dav2[4] == "<u>0.262</u>"
    assert ours[9] == "**0.983**" and gen[9] == "<u>0.959</u>" and dav2[9] == "0.865"


def test_ties_share_the_better_rank():
    table = build_table(table4_summaries())
    j = table.columns.index(("scannet", "abs_rel"))  # DAv2 and Ours both 0.042
    assert [row[j] for row in table.ranks] == [1, 3, 1]
    assert table.best(0, j) and table.best(2, j) and not table.second(1, j)
    assert rank_column([0.5, 0.9, 0.9, None, 0.1], lower_is_better=False) == [3, 1, 1, None, 4]
    # Ranks compare printed values: 0.0421 and 0.0424 both print as 0.042.
    assert rank_column([0.0421, 0.0424, 0.05], lower_is_better=True) == [1, 1, 3]


def test_missing_dataset_and_null_metric_are_dashes_and_unranked():
    a = summary("a", {"nyu": {"abs_rel": 0.05, "delta1": 0.9}, "middlebury": {"abs_rel": 0.1}})
    b = summary("b", {"nyu": {"abs_rel": None, "delta1": 0.95}, "kitti": {"abs_rel": 0.1}})
    table = build_table([a, b])
    assert table.columns == [
        (d, m) for d in ("nyu", "kitti", "middlebury") for m in ("abs_rel", "delta1")
    ]
    assert table.values[1][0] is None and table.ranks[1][0] is None
    assert table.ranks[0] == [1, 2, None, None, 1, None]
    assert table.ranks[1] == [None, 1, 1, None, None, None]
    assert table.avg_rank == [pytest.approx(4 / 3), 1.0]
    rows = table_markdown(table).splitlines()
    assert rows[3] == "| a | 0.050 | <u>0.900</u> | - | - | 0.100 | - | 1.3 |"
    assert rows[4] == "| b | - | **0.950** | 0.100 | - | - | - | 1.0 |"
    assert not table.best(0, 0)  # a single value in a column is not marked


def test_boundary_f1_column_follows_the_datasets_that_have_it():
    a = summary("a", {"nyu": {"abs_rel": 0.05, "delta1": 0.9}, "middlebury": {"abs_rel": 0.1}})
    b = summary("b", {"middlebury": {"abs_rel": 0.2, "delta1": 0.8, "boundary_f1": 0.31}})
    a["datasets"]["middlebury"]["boundary_f1"] = 0.42
    table = build_table([a, b])
    assert table.columns == [
        ("nyu", "abs_rel"),
        ("nyu", "delta1"),
        ("middlebury", "abs_rel"),
        ("middlebury", "delta1"),
        ("middlebury", "boundary_f1"),
    ]
    j = table.columns.index(("middlebury", "boundary_f1"))
    assert [row[j] for row in table.ranks] == [1, 2]  # higher is better
    rows = table_markdown(table).splitlines()
    assert rows[0] == "| Method | NYUv2 |  | Middlebury |  |  | Avg. Rank |"
    assert rows[2].endswith("| AbsRel↓ | δ1↑ | BF1↑ |  |")


def test_dataset_and_metric_selection():
    table = build_table(table4_summaries(), datasets=["eth3d", "nyu"], metrics=("delta1",))
    assert table.columns == [("eth3d", "delta1"), ("nyu", "delta1")]
    with pytest.raises(ValueError, match="sunrgbd"):
        build_table(table4_summaries(), datasets=["sunrgbd"])
    with pytest.raises(ValueError, match="silog"):
        build_table(table4_summaries(), metrics=("silog",))


def test_csv_and_json_round_trip(tmp_path):
    table = build_table(load_summaries(write_dirs(tmp_path, table4_summaries())))
    md, csv_path, json_path = write_report(table, tmp_path / "out" / "report.md")
    assert md.read_text().startswith("| Method | NYUv2 |")
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == table.methods
    for row, values, avg in zip(rows, table.values, table.avg_rank, strict=True):
        assert [float(row[f"{d}_{m}"]) for d, m in table.columns] == values
        assert float(row["avg_rank"]) == avg
    data = json.loads(json_path.read_text())
    assert data["rows"] == table.methods
    assert [(c["dataset"], c["metric"]) for c in data["columns"]] == table.columns
    assert data["values"] == table.values and data["ranks"] == table.ranks
    assert data["avg_rank"] == table.avg_rank
    assert data["best"][2][0] and data["second"][0][0] and not data["best"][1][0]
    protocol = data["protocols"]["Ours"]["datasets"]["nyu"]
    assert protocol["samples"] == 10 and protocol["protocol"]["score_space"] == "depth"
    assert data["protocols"]["Ours"]["source"] == str(tmp_path / "run2")


def test_csv_leaves_missing_values_empty(tmp_path):
    a = summary("a", {"nyu": {"abs_rel": None, "delta1": 0.9}})
    _, csv_path, _ = write_report(build_table([a]), tmp_path / "r.md")
    assert csv_path.read_text().splitlines()[1] == "a,,0.9,1.0"


def test_protocol_section_names_differing_score_spaces():
    summaries = table4_summaries()
    summaries[2] = summary("Ours", summaries[2]["datasets"], score_space="disparity")
    text = report_markdown(build_table(summaries))
    section = text.split("## How these numbers were computed")[1]
    assert "### NYUv2" in section and "### ETH3D" in section
    assert "samples 10, scored 9, empty masks 1, degenerate fits 0" in section
    # a summary written before samples could be skipped skipped none
    assert "degenerate fits 0, unreadable 0;" in section
    assert "alignment: least squares scale and shift in disparity space" in section
    line = next(x for x in section.splitlines() if "differ in protocol" in x)
    assert "score space: depth (DepthAnything v2, Genpercept(Disparity)); disparity (Ours)" in line
    assert "Methods differ in settings**: score space" in section


def test_same_protocol_has_no_difference_line():
    text = report_markdown(build_table(table4_summaries()))
    assert "differ" not in text


def test_missing_or_malformed_summary_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty_run.*no summary.json"):
        load_summaries([empty])
    bad = tmp_path / "bad_run"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad_run"):
        load_summaries([bad])
    (bad / "summary.json").write_text(json.dumps({"schema": 1, "datasets": {}}))
    with pytest.raises(ValueError, match="model.name"):
        load_summaries([bad])


def test_duplicate_model_names_get_directory_suffixes(tmp_path):
    summaries = table4_summaries()[:2]
    summaries[1]["model"]["name"] = summaries[0]["model"]["name"]
    loaded = load_summaries(write_dirs(tmp_path, summaries))
    assert [s["label"] for s in loaded] == ["DepthAnything v2 (run0)", "DepthAnything v2 (run1)"]
    assert build_table(loaded).methods == [s["label"] for s in loaded]
    with pytest.raises(ValueError, match="duplicate"):
        build_table(summaries)


def test_summaries_carry_the_one_table_of_metric_labels_and_directions(tmp_path):
    """`evaluation score` writes every metric's label and direction into summary.json, from the
    same table the report ranks and labels with."""
    import numpy as np

    from evaluation.datasets import open_dataset
    from evaluation.metrics import METRIC_TABLE
    from evaluation.report import LOWER_IS_BETTER, METRIC_LABELS
    from evaluation.score import ScoreSettings, score_all
    from pipeline.toolkit.launch import Launch

    out = tmp_path / "eval"
    ds = open_dataset("middlebury")
    key = ds.keys()[0]
    depth = ds.load(key, rgb=False).depth
    (out / "predictions" / "middlebury").mkdir(parents=True)
    np.save(out / "predictions" / "middlebury" / f"{key}.npy", 1.0 / np.maximum(depth, 1e-3))
    launch = Launch(device="cpu", workers=0)
    summary = score_all(out, [ds], ScoreSettings(pred_space="disparity"), launch)
    recorded = json.loads((out / "summary.json").read_text())["metrics"]
    assert recorded == summary["metrics"]
    assert {k: v["label"] for k, v in recorded.items()} == METRIC_LABELS
    assert {k for k, v in recorded.items() if v["lower_is_better"]} == LOWER_IS_BETTER
    assert set(recorded) >= {"abs_rel", "delta1", "boundary_f1"} and set(recorded) == set(
        METRIC_TABLE
    )


def test_scores_on_benchmarks_a_model_trained_on_are_marked_and_footnoted():
    """MiDaS v3.1 trained on NYUv2 and KITTI: its evaluation records `trained_on`, and the
    report marks those cells (not zero-shot) and names them under the table."""
    midas = summary(
        "midas-v31",
        {"nyu": {"abs_rel": 0.05, "delta1": 0.98}, "eth3d": {"abs_rel": 0.1, "delta1": 0.9}},
    )
    midas["model"]["trained_on"] = ["nyu", "kitti"]
    other = summary(
        "ours",
        {"nyu": {"abs_rel": 0.06, "delta1": 0.97}, "eth3d": {"abs_rel": 0.08, "delta1": 0.95}},
    )
    text = report_markdown(build_table([midas, other]))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "**0.050**†" in rows["midas-v31"] and "0.100†" not in rows["midas-v31"]
    assert "†" not in rows["ours"]
    assert "† Not zero-shot" in text and "midas-v31 on NYUv2." in text
