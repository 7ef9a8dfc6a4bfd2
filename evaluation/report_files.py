"""The files a result table is written as: Markdown (`report_markdown`), CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from evaluation.datasets.base import dataset_title
from evaluation.report import LOWER_IS_BETTER, Table, alignment_of, report_markdown
from pipeline.toolkit.atomic import write_bytes


def table_csv(table: Table) -> str:
    """One row per method: `method`, `<dataset>_<metric>` (raw floats, empty = none), `avg_rank`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", *[f"{d}_{m}" for d, m in table.columns], "avg_rank"])
    for method, row, avg in zip(table.methods, table.values, table.avg_rank, strict=True):
        writer.writerow([method, *["" if v is None else repr(v) for v in [*row, avg]]])
    return buffer.getvalue()


def table_json(table: Table) -> dict[str, Any]:
    """Everything in the table, JSON-ready."""
    n, m = len(table.methods), len(table.columns)
    return {
        "schema": 1,
        "rows": table.methods,
        "alignments": [alignment_of(d) for d in table.details],
        "columns": [
            {
                "dataset": d,
                "metric": k,
                "title": dataset_title(d),
                "lower_is_better": k in LOWER_IS_BETTER,
            }
            for d, k in table.columns
        ],
        "decimals": table.decimals,
        "values": table.values,
        "ranks": table.ranks,
        "avg_rank": table.avg_rank,
        "best": [[table.best(i, j) for j in range(m)] for i in range(n)],
        "second": [[table.second(i, j) for j in range(m)] for i in range(n)],
        "protocols": dict(zip(table.methods, table.details, strict=True)),
    }


def write_report(table: Table, out: Path) -> list[Path]:
    """Write `out` (Markdown), `out.with_suffix('.csv')` and `.json`; returns the three paths."""
    out = Path(out)
    if out.suffix in (".csv", ".json"):
        raise ValueError(f"{out}: the Markdown report needs another suffix (e.g. .md)")
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out, out.with_suffix(".csv"), out.with_suffix(".json")]
    texts = [
        report_markdown(table),
        table_csv(table),
        json.dumps(table_json(table), indent=2, ensure_ascii=False) + "\n",
    ]
    for path, text in zip(paths, texts, strict=True):
        write_bytes(path, text.encode())
    return paths
