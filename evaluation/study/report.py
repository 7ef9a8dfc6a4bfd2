"""The world study's report: per configuration the mean and standard deviation over seeds of
AbsRel, δ1 and boundary F1 on the held-out world, beside the priors that ignore the image, the
ceiling of the models' token grid, and the paper's published AbsRel for the direction; the
`evaluation report` table of every run; one figure per configuration. The cross-architecture
pair's start (`t2-dpt`, trained as t2 is) is scored beside the teachers, so its students' rows
read against where they began.

Every model row shows its margin over the image-blind ramp (`priors.py`): AbsRel as a ratio to
the ramp's, δ1 as a difference. The report opens with whether teacher t1 clears the bar
(`plan.TEACHER_BAR`) on both test splits; when it does not, the tables are shown but no
conclusion about the method is drawn from them.

AbsRel is also given as the median over test images (from `per_sample.csv`), and the priors'
and teachers' mean AbsRel with its standard error over the test images (what a rerun on another
test split of the same size would move it by).
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evaluation.datasets.base import BenchmarkSample
from evaluation.report import METRIC_LABELS, build_table, load_summaries
from evaluation.report_files import write_report as write_table
from evaluation.study.plan import TEACHER_BAR
from evaluation.study.priors import load_split
from pipeline.toolkit.colormap import colorize_robust

METRICS = ("abs_rel", "abs_rel_median", "delta1", "boundary_f1")
LABELS = {**METRIC_LABELS, "abs_rel_median": "AbsRel median↓"}
PRIOR_NAMES = {
    "prior-constant": "prior: a constant",
    "prior-ramp": "prior: image-blind ramp",
    "ceiling-tokens": "ceiling: exact depth at the token grid",
}
SCORED = ("ok", "degenerate_fit")
"""`per_sample.csv` statuses of scored images (a constant's fit is degenerate, yet scored)."""
PUBLISHED = re.compile(r"(v[12]) .*ETH3D / DIODE AbsRel:? ([0-9]+\.[0-9]+) / ([0-9]+\.[0-9]+)")
"""A config header line quoting the paper: `# Paper v1 Table 1, row ... AbsRel: 0.058 / 0.236)`."""


def _result(study, name: str, split: str = "test") -> dict[str, Any] | None:
    path = study.path("eval", study.eval_name(name, split), "summary.json")
    if not path.is_file():
        return None
    result = dict(json.loads(path.read_text())["datasets"]["world"])
    per_sample = path.with_name("per_sample.csv")
    if per_sample.is_file():
        with per_sample.open(newline="") as f:
            values = [float(r["abs_rel"]) for r in csv.DictReader(f) if r["status"] in SCORED]
        if values:
            result["abs_rel_median"] = statistics.median(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            result["abs_rel_se"] = spread / math.sqrt(len(values))
    return result


def mean_sd(values: list[float]) -> str:
    """`mean ± sd` of a configuration's seeds (the value alone for one seed, `-` for none)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _values(results: list[dict[str, Any] | None]) -> dict[str, list[float]]:
    """Per metric, its values over `results` (one per seed; None: not evaluated yet)."""
    return {m: [r[m] for r in results if r and r.get(m) is not None] for m in METRICS}


def _published(study, config: str) -> str:
    """The paper's numbers the config's header quotes, per version: `v1 0.058 / 0.236, v2 ...`."""
    quoted = {}
    for line in (study.configs / config).read_text().splitlines()[:3]:
        found = PUBLISHED.search(line)
        if found:
            quoted.setdefault(found.group(1), f"{found.group(2)} / {found.group(3)}")
    return ", ".join(f"{v} {n}" for v, n in sorted(quoted.items())) or "-"


def _margin(row: dict[str, list[float]], ramp: dict[str, Any] | None) -> str:
    """AbsRel as a ratio to the ramp's, δ1 as a difference: `0.82× / +0.05`."""
    if not ramp or not row["abs_rel"] or not row["delta1"]:
        return "-"
    ratio = statistics.mean(row["abs_rel"]) / ramp["abs_rel"]
    return f"{ratio:.2f}× / {statistics.mean(row['delta1']) - ramp['delta1']:+.2f}"


def _single(study, name: str, label: str, split: str) -> dict[str, Any]:
    result = _result(study, name, split)
    row = {"name": label, "paper": "-", **_values([result])}
    if result and result.get("abs_rel_se") is not None:
        row["se"] = result["abs_rel_se"]
    return row


def rows(study, split: str = "test") -> list[dict[str, Any]]:
    """One row per prior, teacher, pre-trained DPT the cross-architecture students start from
    (`start t2-dpt`) and student configuration (students on the test split only): values per
    seed, their summary and the margin over the ramp."""
    ramp = _result(study, "prior-ramp", split)
    out = [_single(study, name, label, split) for name, label in PRIOR_NAMES.items()]
    out += [_single(study, name, f"teacher {name}", split) for name in ("t1", "t2")]
    out += [_single(study, name, f"start {name}", split) for name in study.dpt_inits()]
    if split == "test":
        for student in study.configurations:
            results = [_result(study, f"{student.name}-s{k}") for k in range(study.scale.seeds)]
            if any(results):  # none before the students run (`--until teachers`)
                paper = _published(study, student.config)
                out.append({"name": student.name, "paper": paper, **_values(results)})
    for row in out:
        row["margin"] = "-" if row["name"].startswith(("prior", "ceiling")) else _margin(row, ramp)
    return out


def table(study, split: str = "test") -> str:
    head = ["configuration", *[LABELS[m] for m in METRICS], "vs ramp (AbsRel × / δ1 +)"]
    head += ["paper ETH3D / DIODE AbsRel"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows(study, split):
        cells = [row["name"], *[mean_sd(row[m]) for m in METRICS], row["margin"], row["paper"]]
        if "se" in row and cells[1] != "-":
            cells[1] += f" (±{row['se']:.3f} SE)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    line: str


def teacher_verdict(study) -> Verdict:
    """Whether t1 scores AbsRel ≤ 0.7× the ramp's and δ1 ≥ the ramp's + 0.15 on the test split,
    and beats the ramp on both metrics on the second (`ood`) split."""
    ratio, gain = TEACHER_BAR
    t1, ramp = _result(study, "t1"), _result(study, "prior-ramp")
    t1_ood, ramp_ood = _result(study, "t1", "ood"), _result(study, "prior-ramp", "ood")
    if not (t1 and ramp and t1_ood and ramp_ood):
        return Verdict(False, "teacher t1 or the priors are not scored yet: no conclusion")
    test_ok = t1["abs_rel"] <= ratio * ramp["abs_rel"] and t1["delta1"] >= ramp["delta1"] + gain
    ood_ok = t1_ood["abs_rel"] < ramp_ood["abs_rel"] and t1_ood["delta1"] > ramp_ood["delta1"]
    figures = (
        f"t1 AbsRel {t1['abs_rel']:.3f} (ramp {ramp['abs_rel']:.3f}, bar ≤ "
        f"{ratio * ramp['abs_rel']:.3f}), δ1 {t1['delta1']:.3f} (ramp {ramp['delta1']:.3f}, bar ≥ "
        f"{ramp['delta1'] + gain:.3f}); second split AbsRel {t1_ood['abs_rel']:.3f} against "
        f"{ramp_ood['abs_rel']:.3f}, δ1 {t1_ood['delta1']:.3f} against {ramp_ood['delta1']:.3f}"
    )
    if test_ok and ood_ok:
        return Verdict(True, f"teacher t1 clears the bar over the image-blind prior: {figures}")
    return Verdict(
        False,
        f"teacher t1 does NOT clear the bar over the image-blind prior ({figures}): the students "
        "below are noise around a prior, and no conclusion about the method is drawn from them",
    )


def _fit(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


def figure(study, student, sample: BenchmarkSample) -> Path:
    """image | exact disparity | the student's teachers | the student (first seed), one row."""
    key, depth, valid = sample.key, sample.depth, sample.valid_mask
    h, w = depth.shape
    disparity = np.where(valid, 1.0 / np.maximum(depth, 1e-6), 0.0)
    panels = [sample.rgb, colorize_robust(disparity, valid)]
    for name in (*student.teachers, f"{student.name}-s0"):
        pred = study.path("eval", name, "predictions", "world", f"{key}.npy")
        if pred.is_file():
            panels.append(_fit(colorize_robust(np.load(pred)), h, w))
    canvas = np.full((h, len(panels) * (w + 4) - 4, 3), 255, dtype=np.uint8)
    for k, panel in enumerate(panels):
        canvas[:, k * (w + 4) : k * (w + 4) + w] = panel
    out = study.path("report", "figures", f"{student.name}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(out)
    return out


def curves(study) -> dict[str, list[tuple[int, float, float]]]:
    """Per teacher, (step, AbsRel, δ1) of each scored checkpoint on the test split."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    for folder in sorted(study.path("curves").glob("*/step_*")):
        summary = folder / "summary.json"
        if summary.is_file():
            world = json.loads(summary.read_text())["datasets"]["world"]
            point = (int(folder.name.removeprefix("step_")), world["abs_rel"], world["delta1"])
            out.setdefault(folder.parent.name, []).append(point)
    return out


def curve_table(study) -> str:
    """The learning curves as a table: one row per checkpoint, the ramp's values beside."""
    ramp = _result(study, "prior-ramp") or {}
    lines = ["| teacher | step | AbsRel↓ | δ1↑ |", "|---|---|---|---|"]
    for name, points in curves(study).items():
        lines += [f"| {name} | {step} | {a:.3f} | {d:.3f} |" for step, a, d in points]
    if ramp:
        lines.append(
            f"| prior: image-blind ramp | - | {ramp['abs_rel']:.3f} | {ramp['delta1']:.3f} |"
        )
    return "\n".join(lines) + "\n"


COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def curve_figure(study, size: tuple[int, int] = (360, 240)) -> Path | None:
    """`report/figures/curves.png`: AbsRel (left) and δ1 (right) against the step, one line per
    teacher, the ramp as a grey line; None before any checkpoint is scored."""
    from PIL import ImageDraw

    found = curves(study)
    if not found:
        return None
    ramp = _result(study, "prior-ramp") or {}
    w, h = size
    canvas = Image.new("RGB", (2 * w + 10, h + 20), "white")
    draw = ImageDraw.Draw(canvas)
    last = max(step for points in found.values() for step, _, _ in points)
    for panel, (metric, label) in enumerate(((1, "AbsRel"), (2, "delta1"))):
        values = [p[metric] for points in found.values() for p in points]
        values += [ramp[m] for m in ("abs_rel", "delta1")[metric - 1 : metric] if m in ramp]
        lo, hi = min(values) - 0.02, max(values) + 0.02
        x0 = panel * (w + 10)

        def at(step: float, v: float, x0: int = x0, lo: float = lo, hi: float = hi):
            return x0 + 30 + (w - 40) * step / last, 10 + (h - 30) * (hi - v) / (hi - lo)

        draw.rectangle([x0 + 30, 10, x0 + w - 10, h - 20], outline="black")
        draw.text((x0 + 34, h - 16), f"{label}  {lo:.2f}..{hi:.2f}, steps 0..{last}", fill="black")
        if ramp:
            y = at(0, ramp[("abs_rel", "delta1")[metric - 1]])[1]
            draw.line([x0 + 30, y, x0 + w - 10, y], fill=(150, 150, 150), width=1)
        for k, (name, points) in enumerate(found.items()):
            xy = [at(p[0], p[metric]) for p in points]
            colour = COLOURS[k % len(COLOURS)]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            for x, y in xy:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
            draw.text((x0 + 36 + 40 * k, 12), name, fill=colour)
    out = study.path("report", "figures", "curves.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def write_report(study, seconds: float) -> Path:
    """`report/study.md` (the verdict, the tables, how it was made, the figures) and
    `report/evaluation.md` (the `evaluation report` table of every scored run)."""
    report = study.path("report")
    report.mkdir(parents=True, exist_ok=True)
    evals = sorted(p for p in study.path("eval").iterdir() if (p / "summary.json").is_file())
    write_table(build_table(load_summaries(evals)), report / "evaluation.md")
    (sample,) = load_split(study.path("world", "test"), 1, rgb=True)
    figures = [figure(study, student, sample) for student in study.configurations]
    curve_figure(study)
    s = study.scale
    ood_h, ood_w = s.ood
    text = [
        "# World study",
        "",
        teacher_verdict(study).line + ".",
        "",
        f"Scale: images {s.height}x{s.width}, tile {s.tile}, regions from {s.min_region} px, "
        f"student input {s.size}; teachers {s.teacher_sizes} trained {s.teacher_steps} steps on "
        f"{s.teacher_images} images of exact depth; students {s.student_steps} steps, batch "
        f"{s.batch}, {s.seeds} seed(s), distilled on {s.student_images} images; test "
        f"{s.test_images} images, and {s.test_images} of the second split at {ood_h}x{ood_w}. "
        f"Wall time {seconds / 60:.1f} min.",
        "",
        "Values: mean ± standard deviation over seeds on the held-out world (protocol: least "
        "squares scale and shift in disparity, depth scored to 80 m, boundary F1 after "
        "alignment). Paper: published ETH3D / DIODE AbsRel of the same configuration (direction "
        "only; other data and scale).",
        "",
        table(study),
        f"Second test split ({ood_h}x{ood_w}, another aspect ratio and field of view):",
        "",
        table(study, "ood"),
        "Learning curves of the teachers on the test split (`figures/curves.png`: AbsRel left, "
        "δ1 right, the ramp in grey):",
        "",
        curve_table(study),
        "Figures (image | exact disparity | teacher(s) | student, seed 0): "
        + ", ".join(f"`{f.relative_to(report)}`" for f in figures),
        "",
    ]
    out = report / "study.md"
    out.write_text("\n".join(text))
    return out
