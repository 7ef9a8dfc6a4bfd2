"""The model card's evaluation section: the results of the `evaluation run` directories given to
`student export --eval`, each checked to have scored this export's run and checkpoint (or an
export of it, `student.export_record`). Each `summary.json` is read as plain JSON (the student
never imports `evaluation`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from student.export_record import check_scored

METRICS = ("abs_rel", "delta1", "delta2", "delta3")
"""The metrics the card shows, labelled as each `summary.json` says (`metrics`: the evaluation's
one table of metrics); a summary written before it carried them shows the keys."""


def read_summaries(evals: list[Path] | tuple[Path, ...], run_dir: Path, step: int) -> list[dict]:
    """The summaries of `evals`, each of run `run_dir`'s checkpoint at `step` (else a
    ValueError naming both models)."""
    summaries = []
    for path in evals:
        summary = read_summary(Path(path))
        check_scored(summary, Path(path), run_dir, step)
        summaries.append(summary)
    return summaries


def read_summary(path: Path) -> dict[str, Any]:
    """An `evaluation run` / `score` `summary.json` (a directory or the file) as plain JSON."""
    file = path / "summary.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"--eval {path}: no summary.json (write one with `evaluation run --model MODEL "
            "--out DIR` and pass DIR)"
        )
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--eval {file}: not readable JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise ValueError(f"--eval {file}: not an evaluation summary (no 'datasets')")
    return data


def _number(value: Any) -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value:.4f}" if ok else "–"


def evaluation_section(summaries: list[dict[str, Any]]) -> str:
    head = "## Evaluation\n\n"
    if not summaries:
        return (
            f"{head}Not evaluated at export (pass `evaluation run` directories with "
            "`student export --eval DIR`)."
        )
    labels = {k: k for k in (*METRICS, "rmse")}
    for summary in summaries:
        recorded = summary.get("metrics") or {}
        labels.update({k: v["label"] for k, v in recorded.items() if k in labels and "label" in v})
    columns = " | ".join(labels[key] for key in METRICS)
    head_row = f"| model | dataset | samples | {columns} | {labels['rmse']} |"
    rows = [head_row, "|---" * (4 + len(METRICS)) + "|"]
    alignments = set()
    for summary in summaries:
        model = summary.get("model") or {}
        name = model.get("name", "?")
        for dataset, entry in summary["datasets"].items():
            values = " | ".join(_number(entry.get(key)) for key in METRICS)
            scored = entry.get("scored", entry.get("samples", "?"))
            rows.append(
                f"| {name} | {dataset} | {scored} | {values} | {_number(entry.get('rmse'))} |"
            )
            alignments.add((entry.get("protocol") or {}).get("alignment"))
    how = "; ".join(sorted(a for a in alignments if a)) or "as recorded in each summary.json"
    return f"{head}Zero-shot, Marigold protocol ({how}); `evaluation run`:\n\n" + "\n".join(rows)
