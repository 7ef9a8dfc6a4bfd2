"""The metric study's report: per model AbsRel and δ1 on both test splits, metric (`--alignment
none`, each image's focal length from the world) and as today's protocol (scale and shift
fitted), the students as mean ± standard deviation over seeds, beside the image-blind metric
priors. A metric conclusion is drawn only when the canonical students beat the best prior with
`--alignment none` on the test split.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from evaluation.study.plan import ARMS, METRIC_PRIORS, SPLITS, TEACHER
from evaluation.study.report import mean_sd
from pipeline.toolkit.atomic import write_bytes

PRIOR_LABELS = {
    "prior-median-depth": "prior: the training split's median depth everywhere",
    "prior-depth-map": "prior: the training split's per-pixel median depth (image-blind)",
}
COLUMNS = (
    ("none", "abs_rel"),
    ("none", "delta1"),
    ("scale-shift", "abs_rel"),
    ("scale-shift", "delta1"),
)


def world_scores(summary: Path) -> dict[str, dict[str, float]]:
    """`{alignment: {"abs_rel": .., "delta1": ..}}` of one evaluation directory's summary.json:
    every alignment it scored (`by_alignment`: a metric model is scored both ways), else its
    one (`settings.alignment`)."""
    data = json.loads(summary.read_text())
    by = data.get("by_alignment") or {data["settings"]["alignment"]: data["datasets"]}
    return {alignment: dict(datasets["world"]) for alignment, datasets in by.items()}


def _scores(study, name: str, split: str) -> dict[str, dict[str, float]] | None:
    path = study.path("eval", study.eval_name(name, split), "summary.json")
    return world_scores(path) if path.is_file() else None


def _row(label: str, results: list[dict[str, dict[str, float]] | None]) -> list[str]:
    found = [r for r in results if r is not None]
    cells = []
    for alignment, metric in COLUMNS:
        cells.append(mean_sd([r[alignment][metric] for r in found if alignment in r]))
    n = f" (n={len(found)})" if len(results) > 1 else ""
    return [label + n, *cells]


def split_table(study, split: str) -> tuple[str, dict[str, list[float]]]:
    """The Markdown table of one test split, and per arm the metric AbsRel of each seed."""
    rows = [_row(PRIOR_LABELS[p], [_scores(study, p, split)]) for p in METRIC_PRIORS]
    rows.append(
        _row(f"teacher {TEACHER} (metric, on the exact depth)", [_scores(study, TEACHER, split)])
    )
    per_arm: dict[str, list[float]] = {}
    for arm in ARMS:
        names = [n for n, a, _ in study.student_names() if a == arm]
        results = [_scores(study, n, split) for n in names]
        per_arm[arm] = [r["none"]["abs_rel"] for r in results if r and "none" in r]
        rows.append(_row(f"student `{arm}`", results))
    head = "| model | AbsRel↓ metric | δ1↑ metric | AbsRel↓ scale-shift | δ1↑ scale-shift |"
    lines = [head, "|---|---:|---:|---:|---:|", *("| " + " | ".join(r) + " |" for r in rows)]
    return "\n".join(lines), per_arm


def verdict(study) -> tuple[str, bool]:
    """Whether the canonical students beat the best image-blind prior (metric, test split), and
    what the negative control shows; one paragraph."""
    _, arms = split_table(study, "test")
    priors = [_scores(study, p, "test") for p in METRIC_PRIORS]
    best = min((r["none"]["abs_rel"] for r in priors if r and "none" in r), default=float("nan"))
    canonical, raw = arms.get("canonical", []), arms.get("raw", [])
    if not canonical:
        return "No canonical student was scored: no conclusion.", False
    mean = statistics.mean(canonical)
    beats = mean < best
    text = (
        f"Canonical students: metric AbsRel {mean_sd(canonical)} against the best image-blind "
        f"prior's "
        f"{best:.3f}: they {'beat' if beats else 'do NOT beat'} it."
    )
    if not beats:
        return text + " No conclusion about canonicalisation is drawn.", False
    if raw and min(len(raw), len(canonical)) < 2:
        text += f" The negative control (raw metres) scores {mean_sd(raw)}: one seed, no spread."
    elif raw:
        gap = statistics.mean(raw) - mean
        spread = max(statistics.stdev(canonical), statistics.stdev(raw))
        text += (
            f" The negative control (raw metres) scores {mean_sd(raw)}: {gap:+.3f} AbsRel "
            f"({'more than' if gap > 2 * spread else 'within'} twice the larger seed spread, "
            f"{spread:.3f})."
        )
    return text, beats


def write_metric_report(study, seconds: float) -> tuple[Path, bool]:
    """`OUT/report.md`; and whether the canonical students beat the priors."""
    text, beats = verdict(study)
    parts = [
        "# Metric depth on the world: canonical vs raw labels",
        "",
        f"Scale: {json.dumps(study.scale.__dict__, default=str)}; "
        f"f_c = {study.canonical_focal():g} px; {seconds / 60:.0f} min.",
        "",
        text,
    ]
    for split in SPLITS:
        table, _ = split_table(study, split)
        parts += ["", f"## {split}", "", table]
    path = study.path("report.md")
    write_bytes(path, ("\n".join(parts) + "\n").encode())
    return path, beats
