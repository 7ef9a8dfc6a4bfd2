"""Result tables in the paper's Table 4/5 layout: methods × (dataset, metric), best in bold,
second best underlined, and an average rank; written as Markdown, CSV and JSON
(`evaluation.report_files`).

Ranks compare the printed values (rounded to `decimals`), so the table is self-consistent:
competition ranking, ties share the better rank (1, 1, 3). Bold marks rank 1 and underline
rank 2, in columns where at least two methods have a value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.alignment import DEFAULT_ALIGNMENT
from evaluation.datasets.base import dataset_title
from evaluation.metrics import METRIC_TABLE

PAPER_ORDER = ("nyu", "kitti", "diode", "scannet", "eth3d")
METRIC_LABELS = {key: metric.label for key, metric in METRIC_TABLE.items()}
DETAIL_COLUMNS = ("boundary_f1",)
"""Shown after a dataset's chosen metrics wherever some method has them (sharp-edged sets)."""
LOWER_IS_BETTER = frozenset(key for key, metric in METRIC_TABLE.items() if metric.lower_is_better)
COUNTS = {
    "samples": "samples",
    "scored": "scored",
    "empty_mask": "empty masks",
    "degenerate_fit": "degenerate fits",
    "unreadable": "unreadable",
}
ABSENT_COUNTS = {"unreadable": 0}
"""Counts a summary may lack: written before samples could be skipped, it skipped none."""
# Protocol keys that follow from the model's output space; differing values are expected.
_MODEL_KEYS = ("pred_space", "alignment", "alignment_mode")
ALIGNMENT_NOTES = {
    "scale-shift": "least squares scale and shift (the protocol for relative models)",
    "scale": "least squares scale only",
    "none": "no fit, the prediction taken as metric depth",
}


@dataclass
class Table:
    """One row per method, one column per (dataset, metric)."""

    methods: list[str]
    columns: list[tuple[str, str]]
    values: list[list[float | None]]
    ranks: list[list[int | None]]
    avg_rank: list[float | None]
    details: list[dict[str, Any]]
    """Per method: model, settings, versions, source and per-dataset counts and protocol."""
    decimals: int = 3

    def _marked(self, j: int) -> bool:
        return sum(row[j] is not None for row in self.values) >= 2

    def seen_in_training(self, i: int, j: int) -> bool:
        """Whether method `i`'s model trained on column `j`'s dataset (its score there is not
        zero-shot: MiDaS v3.1 on NYUv2 and KITTI), as its evaluation recorded."""
        model = self.details[i].get("model") or {}
        return self.columns[j][0] in (model.get("trained_on") or ())

    def best(self, i: int, j: int) -> bool:
        return self.ranks[i][j] == 1 and self._marked(j)

    def second(self, i: int, j: int) -> bool:
        return self.ranks[i][j] == 2 and self._marked(j)


# ---------------------------------------------------------------------------------- loading


def _read_summary(path: Path) -> dict[str, Any]:
    file = path if path.name == "summary.json" and path.is_file() else path / "summary.json"
    if not file.is_file():
        raise ValueError(f"{path}: no summary.json (run `evaluation run` or `score` first)")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema", 1) != 1:
        raise ValueError(f"{file}: not a schema-1 evaluation summary")
    model, datasets = data.get("model"), data.get("datasets")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise ValueError(f"{file}: missing model.name")
    if not isinstance(datasets, dict) or not all(isinstance(v, dict) for v in datasets.values()):
        raise ValueError(f"{file}: 'datasets' must map dataset names to results")
    data["source"] = str(file.parent)
    return data


def alignment_of(summary: dict[str, Any]) -> str:
    """The `--alignment` a summary (or a method's `Table.details`) was scored with: its
    settings, else its datasets' protocol, else the default (written before the setting)."""
    recorded = (summary.get("settings") or {}).get("alignment")
    for result in (summary.get("datasets") or {}).values():
        recorded = recorded or ((result or {}).get("protocol") or {}).get("alignment_mode")
    return recorded or DEFAULT_ALIGNMENT


def per_alignment(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """`summary`, or one copy per alignment when it was scored with several (`by_alignment`):
    each with that alignment's datasets and `settings.alignment`."""
    by_alignment = summary.get("by_alignment")
    if not isinstance(by_alignment, dict) or len(by_alignment) < 2:
        return [summary]
    copies = []
    for alignment, datasets in by_alignment.items():
        settings = {**(summary.get("settings") or {}), "alignment": alignment}
        copies.append({**summary, "settings": settings, "datasets": datasets})
    return copies


def mixes_alignments(summaries: list[dict[str, Any]]) -> bool:
    return len({alignment_of(s) for s in summaries}) > 1


def load_summaries(dirs: list[Path]) -> list[dict[str, Any]]:
    """Read `summary.json` from each directory (or the file itself), in order.

    Each summary gets `source` (its directory) and `label` (its row name): the model name, or
    `name (dirname)` when several summaries share a model name (then ` #k` if still equal).
    When the summaries mix alignments, every name is followed by its alignment (`name · none`),
    so a metric model scored both ways has a row per alignment; a summary scored with several
    (`by_alignment`) counts as one summary per alignment.
    """
    summaries = [each for d in dirs for each in per_alignment(_read_summary(Path(d)))]
    names = [s["model"]["name"] for s in summaries]
    if mixes_alignments(summaries):
        names = [f"{n} · {alignment_of(s)}" for n, s in zip(names, summaries, strict=True)]
    labels = [
        f"{n} ({Path(s['source']).name})" if names.count(n) > 1 else n
        for n, s in zip(names, summaries, strict=True)
    ]
    for i, (summary, label) in enumerate(zip(summaries, labels, strict=True)):
        k = labels[:i].count(label)
        summary["label"] = label if k == 0 else f"{label} #{k + 1}"
    return summaries


# ---------------------------------------------------------------------------------- table


def _dataset_key(name: str) -> tuple[int, str]:
    return (PAPER_ORDER.index(name), "") if name in PAPER_ORDER else (len(PAPER_ORDER), name)


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def rank_column(
    values: list[float | None], lower_is_better: bool, decimals: int = 3
) -> list[int | None]:
    """Competition ranks (ties share the better rank) of rounded values; None stays None."""
    keys = [None if v is None else round(v if lower_is_better else -v, decimals) for v in values]
    present = [k for k in keys if k is not None]
    return [None if k is None else 1 + sum(o < k for o in present) for k in keys]


def _mean(ranks: list[int]) -> float | None:
    return sum(ranks) / len(ranks) if ranks else None


def _details(summary: dict[str, Any]) -> dict[str, Any]:
    datasets = {}
    for name, result in summary["datasets"].items():
        protocol = result.get("protocol")
        if not isinstance(protocol, dict):  # older writers: fall back on the run settings
            protocol = {
                "pred_space": summary["model"].get("pred_space"),
                **summary.get("settings", {}),
            }
        counts = {c: result.get(c, ABSENT_COUNTS.get(c)) for c in COUNTS}
        datasets[name] = {**counts, "protocol": protocol}
    keep = ("model", "settings", "versions", "source")
    return {**{k: summary.get(k) for k in keep}, "datasets": datasets}


def _choose_datasets(summaries: list[dict], datasets: list[str] | None) -> list[str]:
    present = {name for s in summaries for name in s["datasets"]}
    if datasets is None:
        return sorted(present, key=_dataset_key)
    unknown = [d for d in datasets if d not in present]
    if unknown:
        raise ValueError(f"datasets {unknown} are in no summary (present: {sorted(present)})")
    return list(datasets)


def _detail_metrics(summaries: list[dict], dataset: str, chosen: tuple[str, ...]) -> list[str]:
    """The `DETAIL_COLUMNS` some summary has a value of for `dataset` (and not chosen already)."""
    return [
        m
        for m in DETAIL_COLUMNS
        if m not in chosen
        and any(s["datasets"].get(dataset, {}).get(m) is not None for s in summaries)
    ]


def build_table(
    summaries: list[dict[str, Any]],
    datasets: list[str] | None = None,
    metrics: tuple[str, ...] = ("abs_rel", "delta1"),
    decimals: int = 3,
) -> Table:
    """The table of `summaries` (rows in input order). Columns: `datasets` in the given order,
    or every dataset present, in the paper's order NYUv2, KITTI, DIODE, ScanNet, ETH3D, then the
    others alphabetically; × `metrics`."""
    methods = [s.get("label") or s["model"]["name"] for s in summaries]
    if len(set(methods)) != len(methods):
        raise ValueError(f"duplicate method names {methods}; load with load_summaries")
    bad = [m for m in metrics if m not in METRIC_LABELS]
    if bad:
        raise ValueError(f"unknown metrics {bad}; known: {list(METRIC_LABELS)}")
    columns = [
        (d, m)
        for d in _choose_datasets(summaries, datasets)
        for m in (*metrics, *_detail_metrics(summaries, d, metrics))
    ]
    values = [[_number(s["datasets"].get(d, {}).get(m)) for d, m in columns] for s in summaries]
    by_column = [
        rank_column([row[j] for row in values], m in LOWER_IS_BETTER, decimals)
        for j, (_, m) in enumerate(columns)
    ]
    ranks = [[col[i] for col in by_column] for i in range(len(summaries))]
    avg = [_mean([r for r in row if r is not None]) for row in ranks]
    details = [_details(s) for s in summaries]
    return Table(methods, columns, values, ranks, avg, details, decimals)


# ---------------------------------------------------------------------------------- markdown


def _title(dataset: str) -> str:
    return dataset_title(dataset)  # the loader's `title`


def _cell(table: Table, i: int, j: int) -> str:
    value = table.values[i][j]
    if value is None:
        return "-"
    text = f"{value:.{table.decimals}f}"
    if table.best(i, j):
        text = f"**{text}**"
    elif table.second(i, j):
        text = f"<u>{text}</u>"
    return f"{text}{NOT_ZERO_SHOT}" if table.seen_in_training(i, j) else text


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_markdown(table: Table) -> str:
    """The table as Markdown: a dataset header row, then a metric row, then one row per method."""
    header = ["Method"]
    for j, (dataset, _) in enumerate(table.columns):
        first = j == 0 or table.columns[j - 1][0] != dataset
        header.append(_title(dataset) if first else "")
    lines = [
        _row([*header, "Avg. Rank"]),
        _row([":---", *[":---:"] * len(table.columns), ":---:"]),
        _row(["", *[METRIC_LABELS[m] for _, m in table.columns], ""]),
    ]
    for i, method in enumerate(table.methods):
        avg = "-" if table.avg_rank[i] is None else f"{table.avg_rank[i]:.1f}"
        lines.append(_row([method, *[_cell(table, i, j) for j in range(len(table.columns))], avg]))
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return json.dumps(value)
    return "native" if value is None else str(value)


def _differences(per_method: dict[str, dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    """'key: value (methods); value (methods)' for each key whose values differ."""
    keys = sorted({k for d in per_method.values() for k in d if k not in skip})
    out = []
    for key in keys:
        groups: dict[str, list[str]] = {}
        for method, d in per_method.items():
            groups.setdefault(_show(d.get(key)), []).append(method)
        if len(groups) > 1:
            parts = "; ".join(f"{v} ({', '.join(ms)})" for v, ms in groups.items())
            out.append(f"{key.replace('_', ' ')}: {parts}")
    return out


def _method_lines(table: Table) -> list[str]:
    lines = []
    for method, d in zip(table.methods, table.details, strict=True):
        model, settings = d.get("model") or {}, d.get("settings") or {}
        versions = ", ".join(f"{k} {v}" for k, v in (d.get("versions") or {}).items())
        setting = ", ".join(f"{k.replace('_', ' ')} {_show(v)}" for k, v in settings.items())
        lines.append(
            f"- **{method}**: `{model.get('spec', model.get('name'))}` ({model.get('kind', '?')},"
            f" {model.get('pred_space', '?')} output); {setting or 'default settings'};"
            f" {versions or 'versions not recorded'}"
            + (f"; from `{d['source']}`" if d.get("source") else "")
        )
    settings = {
        m: d.get("settings") or {} for m, d in zip(table.methods, table.details, strict=True)
    }
    lines += [f"- **Methods differ in settings**: {line}" for line in _differences(settings)]
    return lines


def _dataset_lines(table: Table, dataset: str) -> list[str]:
    lines, protocols = [f"### {_title(dataset)}", ""], {}
    for method, d in zip(table.methods, table.details, strict=True):
        result = d["datasets"].get(dataset)
        if result is None:
            lines.append(f"- {method}: not evaluated")
            continue
        p = protocols[method] = result["protocol"]
        counts = ", ".join(
            f"{label} {'?' if result[c] is None else result[c]}" for c, label in COUNTS.items()
        )
        lines.append(
            f"- {method}: {counts}; alignment: {p.get('alignment', '?')};"
            f" pred space {p.get('pred_space', '?')}; score space {p.get('score_space', '?')}"
        )
    diffs = _differences(protocols, skip=_MODEL_KEYS)
    lines += [f"- **Methods differ in protocol**: {line}" for line in diffs]
    shown = {*_MODEL_KEYS, "score_space"}
    common = {k: v for k, v in next(iter(protocols.values()), {}).items() if k not in shown}
    common = {k: v for k, v in common.items() if all(p.get(k) == v for p in protocols.values())}
    if common:
        lines.append(
            "- Common: "
            + "; ".join(f"{k.replace('_', ' ')}: {_show(v)}" for k, v in common.items())
        )
    return [*lines, ""]


NOT_ZERO_SHOT = "†"
"""Marks a score on a benchmark the model trained on (`Table.seen_in_training`)."""


def _not_zero_shot_lines(table: Table) -> list[str]:
    """The footnote of the `NOT_ZERO_SHOT` marks, naming the methods and datasets."""
    marked = {}
    for i, method in enumerate(table.methods):
        seen = {d for j, (d, _) in enumerate(table.columns) if table.seen_in_training(i, j)}
        if seen:
            marked[method] = sorted(seen)
    if not marked:
        return []
    which = "; ".join(
        f"{m} on {', '.join(dataset_title(d) for d in sets)}" for m, sets in marked.items()
    )
    return [
        f"{NOT_ZERO_SHOT} Not zero-shot: the model's architecture family was trained on these "
        f"benchmarks (MiDaS v3.1 trained on NYUv2 and KITTI; a student initialised from it "
        f"inherits that): {which}.",
        "",
    ]


def _alignment_lines(table: Table) -> list[str]:
    """When methods were aligned differently: what each alignment named in the rows means."""
    used = list(dict.fromkeys(alignment_of(d) for d in table.details))
    if len(used) < 2:
        return []
    notes = "; ".join(f"`{a}`: {ALIGNMENT_NOTES.get(a, a)}" for a in used)
    return [f"Rows name the alignment each was scored with ({notes}).", ""]


def report_markdown(table: Table) -> str:
    """The table, then what each number is: methods, settings, counts and protocol per dataset."""
    datasets = list(dict.fromkeys(d for d, _ in table.columns))
    lines = [
        table_markdown(table),
        "## How these numbers were computed",
        "",
        "A dataset score is the mean of per-sample metrics over the scored samples; metrics are"
        " fractions. **Bold**: best, <u>underlined</u>: second best. Ranks compare the printed"
        f" values ({table.decimals} decimals), ties share the better rank; Avg. Rank is the mean"
        " over the columns a method has a value for; `-`: no value (not ranked).",
        "",
        *_not_zero_shot_lines(table),
        *_alignment_lines(table),
        *_method_lines(table),
        "",
    ]
    for dataset in datasets:
        lines += _dataset_lines(table, dataset)
    return "\n".join(lines).rstrip() + "\n"
