"""The world study's report: per configuration the mean and standard deviation over seeds of
AbsRel, δ1 and boundary F1 on the held-out world, beside the paper's published AbsRel for the
direction; the `evaluation report` table of every run; one figure per configuration.

AbsRel is also given as the median over test images (from `per_sample.csv`): the world's ground
runs to the horizon (depths to 400 m), and after the disparity-space alignment a few far pixels
per image can be off several times their depth, so the mean over images follows a handful of
images; the median shows the typical one.

Reads only files (each run's `summary.json`, predictions and the test split), so `pipeline`
still imports no stage.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.toolkit.colormap import apply_colormap

METRICS = (
    ("abs_rel", "AbsRel↓"),
    ("abs_rel_median", "AbsRel median↓"),
    ("delta1", "δ1↑"),
    ("boundary_f1", "BF1↑"),
)
PUBLISHED = re.compile(r"(v[12]) .*ETH3D / DIODE AbsRel:? ([0-9]+\.[0-9]+) / ([0-9]+\.[0-9]+)")
"""A config header line quoting the paper: `# Paper v1 Table 1, row ... AbsRel: 0.058 / 0.236)`."""


def _result(study, name: str) -> dict[str, Any] | None:
    path = study.path("eval", name, "summary.json")
    if not path.is_file():
        return None
    result = dict(json.loads(path.read_text())["datasets"]["world"])
    per_sample = path.with_name("per_sample.csv")
    if per_sample.is_file():
        with per_sample.open(newline="") as f:
            values = [float(r["abs_rel"]) for r in csv.DictReader(f) if r["status"] == "ok"]
        result["abs_rel_median"] = statistics.median(values) if values else None
    return result


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _values(results: list[dict[str, Any] | None]) -> dict[str, list[float]]:
    """Per metric, its values over `results` (one per seed; None: not evaluated yet)."""
    return {m: [r[m] for r in results if r and r.get(m) is not None] for m, _ in METRICS}


def _published(study, config: str) -> str:
    """The paper's numbers the config's header quotes, per version: `v1 0.058 / 0.236, v2 ...`."""
    quoted = {}
    for line in (study.configs / config).read_text().splitlines()[:3]:
        found = PUBLISHED.search(line)
        if found:
            quoted.setdefault(found.group(1), f"{found.group(2)} / {found.group(3)}")
    return ", ".join(f"{v} {n}" for v, n in sorted(quoted.items())) or "-"


def rows(study) -> list[dict[str, Any]]:
    """One row per teacher and per student configuration: values per seed and their summary."""
    out = []
    for name in ("t1", "t2"):
        out.append({"name": f"teacher {name}", "paper": "-", **_values([_result(study, name)])})
    for student in study.configurations:
        results = [_result(study, f"{student.name}-s{k}") for k in range(study.scale.seeds)]
        out.append(
            {"name": student.name, "paper": _published(study, student.config), **_values(results)}
        )
    return out


def table(study) -> str:
    head = ["configuration", *[label for _, label in METRICS], "paper ETH3D / DIODE AbsRel"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows(study):
        cells = [row["name"], *[_stats(row[m]) for m, _ in METRICS], row["paper"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _colour(disp: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """A disparity map in colour, stretched over its own 2nd..98th percentile (near bright)."""
    disp = np.asarray(disp, dtype=np.float64)
    ok = np.isfinite(disp) if valid is None else valid & np.isfinite(disp)
    lo, hi = np.percentile(disp[ok], [2, 98]) if ok.any() else (0.0, 1.0)
    rgb = apply_colormap((disp - lo) / max(hi - lo, 1e-12))
    rgb[~ok] = 128
    return rgb


def _fit(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


def figure(study, student, key: str) -> Path:
    """image | exact disparity | the student's teachers | the student (first seed), one row."""
    test = study.path("world", "test")
    rgb = np.asarray(Image.open(test / f"{key}.png").convert("RGB"))
    depth = np.load(test / f"{key}.depth.npy")
    valid = np.load(test / f"{key}.mask.npy")
    h, w = depth.shape
    panels = [rgb, _colour(np.where(valid, 1.0 / np.maximum(depth, 1e-6), 0.0), valid)]
    for name in (*student.teachers, f"{student.name}-s0"):
        pred = study.path("eval", name, "predictions", "world", f"{key}.npy")
        if pred.is_file():
            panels.append(_fit(_colour(np.load(pred)), h, w))
    canvas = np.full((h, len(panels) * (w + 4) - 4, 3), 255, dtype=np.uint8)
    for k, panel in enumerate(panels):
        canvas[:, k * (w + 4) : k * (w + 4) + w] = panel
    out = study.path("report", "figures", f"{student.name}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(out)
    return out


def write_report(study, seconds: float) -> Path:
    """`report/study.md` (the table, how it was made, the figures) and `report/evaluation.md`."""
    report = study.path("report")
    report.mkdir(parents=True, exist_ok=True)
    names = ["t1", "t2"] + [f"{n}" for n in sorted(p.name for p in study.path("eval").iterdir())]
    evals = [str(study.path("eval", n)) for n in dict.fromkeys(names)]
    study.run("report", ["evaluation", "report", *evals, "--out", str(report / "evaluation.md")])
    key = sorted(p.name[: -len(".png")] for p in study.path("world", "test").glob("*.png"))[0]
    figures = [figure(study, student, key) for student in study.configurations]
    s = study.scale
    text = [
        "# World study",
        "",
        f"Scale: images {s.height}x{s.width}, tile {s.tile}, regions from {s.min_region} px, "
        f"student input {s.size}; teachers {s.teacher_sizes} trained {s.teacher_steps} steps on "
        f"{s.teacher_images} images of exact depth; students {s.student_steps} steps, batch "
        f"{s.batch}, {s.seeds} seed(s), distilled on {s.student_images} images; test "
        f"{s.test_images} images. Wall time {seconds / 60:.1f} min.",
        "",
        "Values: mean ± standard deviation over seeds on the held-out world (protocol: least "
        "squares scale and shift in disparity, boundary F1 after alignment). Paper: published "
        "ETH3D / DIODE AbsRel of the same configuration (direction only; other data and scale).",
        "",
        table(study),
        "Figures (image | exact disparity | teacher(s) | student, seed 0): "
        + ", ".join(f"`{f.relative_to(report)}`" for f in figures),
        "",
    ]
    out = report / "study.md"
    out.write_text("\n".join(text))
    return out
