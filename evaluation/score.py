"""`evaluation score`: the protocol over an evaluation directory's prediction files.

Reads `OUT/predictions/<dataset>/<key>.npy` (written by `evaluation predict`, or by any other
tool: a float `[H, W]` raw model output at any size of the image's aspect ratio; it is resized
bilinearly to the ground truth's size as the protocol does), scores every sample with
`evaluation.protocol.score` and writes

    OUT/per_sample.csv    dataset, key, status, valid pixels and every metric per sample
    OUT/per_sample.json   the same rows as JSON (`boundary_f1` only where a dataset scores it)
    OUT/summary.json      per dataset: mean metrics, counts, the full protocol, timing
    OUT/per_sample.<alignment>.csv/.json   the rows of each further `--alignment` (several may be
                          given: `summary.json` holds each under `by_alignment`)
    OUT/figures/          with --figures: prediction | ground truth | error per sample, a
                          predicted-vs-true scatter per dataset, and on sets with sharp edges
                          `<key>_edges.png`: ground-truth against predicted edges at t = 1.15

A sample without a prediction file, or with one of the wrong shape, stops the run with the file
named: nothing is skipped silently. With `--skip-bad-samples` a sample whose benchmark files
cannot be decoded (here, or by `predict`: recorded in predictions.json) is skipped and counted
(`unreadable` in summary.json, status `unreadable` in per_sample.csv); without it, it stops the run.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluation.alignment import alignments_for, check_alignment
from evaluation.datasets import BenchmarkDataset
from evaluation.device_score import resize_tensor, score_tensor
from evaluation.metrics import DETAIL_METRICS, METRIC_TABLE, METRICS
from evaluation.predict import (
    PREDICTIONS_JSON,
    SCHEMA,
    catching,
    check_item,
    no_collate,
    prediction_path,
    read_predictions_json,
)
from evaluation.protocol import (
    DATASETS,
    PRED_SPACES,
    aligned_depth,
    check_spaces,
    protocol_description,
    score,
    summarize,
)
from pipeline.toolkit.atomic import write_bytes, write_json
from pipeline.toolkit.cpus import auto_workers
from pipeline.toolkit.devices import resolve_device
from pipeline.toolkit.environment import environment
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.progress import progress_bar
from pipeline.toolkit.workers import exit_with_parent

SCATTER_POINTS_PER_SAMPLE = 20_000
CSV_COLUMNS = (
    "dataset",
    "key",
    "status",
    "valid_pixels",
    "nonfinite_pixels",
    *METRICS,
    *DETAIL_METRICS,
)


@dataclass(frozen=True)
class ScoreSettings:
    pred_space: str | None = None
    """`disparity` or `depth`; unset (None) = what predictions.json records."""
    score_space: str = "depth"
    """`depth` (Marigold convention, default) or `disparity` (Depth Anything convention)."""
    alignment: str | None = None
    """How the prediction meets the ground truth: `scale-shift` (least squares scale and shift in
    the prediction's space, the protocol for relative models), `scale` (least squares scale
    only, same space) or `none` (no fit: the prediction is metric depth; metric models only);
    several comma-separated (e.g. none,scale-shift) score the same predictions with each, the
    first being the main result. Unset (None): none,scale-shift for a metric model (output
    kind metric_depth), else scale-shift."""
    figures: bool = False
    """Write per-sample panels and a scatter per dataset under OUT/figures."""
    name: str | None = None
    """Method name in reports; unset (None) = the model's name from predictions.json."""
    skip_bad_samples: bool = False
    """Skip a sample whose benchmark files cannot be decoded, and count it (`unreadable` in
    summary.json); without it the first such file stops the run."""


ASPECT_TOLERANCE = 0.02
"""Relative difference of aspect ratio up to which a prediction is resized to the ground truth."""


def read_prediction(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A prediction file, checked: exists, a 2-D float map of the ground truth's (`shape`)
    aspect ratio, at any size (predictions are stored at the model's inference size)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prediction file")
    try:
        pred = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    if pred.ndim == 3 and 1 in (pred.shape[0], pred.shape[-1]):
        pred = pred.reshape(pred.shape[1:] if pred.shape[0] == 1 else pred.shape[:2])
    h, w = shape
    if pred.ndim != 2 or not np.issubdtype(pred.dtype, np.floating):
        raise ValueError(f"{path}: prediction {pred.dtype} {pred.shape}; expected a 2-D float map")
    if abs(pred.shape[0] * w / (pred.shape[1] * h) - 1) > ASPECT_TOLERANCE:
        raise ValueError(
            f"{path}: prediction {pred.shape[0]}x{pred.shape[1]} does not have the aspect ratio "
            f"of the ground truth {h}x{w}; predict on the whole image (it is resized bilinearly)"
        )
    return pred


def load_prediction(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """`read_prediction`, resized bilinearly to the ground truth's size as the protocol does."""
    return resize_bilinear(read_prediction(path, shape), shape)


def resize_bilinear(pred: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map (antialiased when shrinking); no-op at equal size."""
    if pred.shape == tuple(size):
        return pred
    return resize_tensor(
        torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32)), size
    ).numpy()


class _Scored(torch.utils.data.Dataset):
    """One sample per item, in a DataLoader worker: read the ground truth and the prediction,
    then (on CPU) resize and score there too; on a CUDA device the main process scores."""

    def __init__(
        self,
        ds: BenchmarkDataset,
        out: Path,
        settings: ScoreSettings,
        pred_space: str,
        read_only: bool,
        keys: list[str],
    ):
        self.ds, self.out, self.settings, self.pred_space = ds, out, settings, pred_space
        self.read_only = read_only
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        """What `_read` gives, or `Failed` for a sample that cannot be read."""
        return catching(self._read, self.keys[i])

    def _read(self, key: str) -> tuple[Any, ...]:
        sample = self.ds.load(key, rgb=False)
        pred = read_prediction(prediction_path(self.out, self.ds.name, key), sample.depth.shape)
        if self.read_only:
            return sample, pred
        pred = resize_bilinear(pred, sample.depth.shape)
        args = (self.ds.name, self.pred_space, sample.valid_mask, self.settings.score_space)
        row = score(pred, sample.depth, *args, alignment=self.settings.alignment)
        return self.finish(row, sample, pred)

    def finish(self, row: dict[str, Any], sample: Any, pred: np.ndarray) -> tuple[Any, ...]:
        """The CSV row and, with --figures, the written panel's scatter points."""
        row = {"dataset": self.ds.name, "key": sample.key, **row}
        points = self._figure(sample.key, pred, sample) if self.settings.figures else None
        return row, points

    def score_on(self, device: torch.device, sample: Any, raw: np.ndarray) -> tuple[Any, ...]:
        """Resize and score one read sample on `device` (the main process)."""
        gt = torch.from_numpy(_native(sample.depth)).to(device)
        mask = None if sample.valid_mask is None else torch.from_numpy(sample.valid_mask)
        mask = None if mask is None else mask.to(device)
        pred = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32)).to(device)
        pred = resize_tensor(pred, tuple(sample.depth.shape))
        args = (self.ds.name, self.pred_space, mask, self.settings.score_space)
        row = score_tensor(pred, gt, *args, alignment=self.settings.alignment)
        figure_pred = pred.cpu().numpy() if self.settings.figures else raw
        return self.finish(row, sample, figure_pred)

    def _figure(self, key: str, pred: np.ndarray, sample: Any) -> np.ndarray:
        """Write the sample's panel; return a deterministic subsample of (pred, gt) pairs."""
        from evaluation.figures import edge_panel, sample_panel, save_png

        depth, mask = aligned_depth(
            pred,
            sample.depth,
            self.ds.name,
            self.pred_space,
            sample.valid_mask,
            self.settings.alignment,
        )
        panel = sample_panel(depth, sample.depth, mask)
        save_png(panel, self.out / "figures" / self.ds.name / f"{key}.png")
        if DATASETS.get(self.ds.name).sharp_boundaries:
            edges = edge_panel(depth, sample.depth, mask)
            save_png(edges, self.out / "figures" / self.ds.name / f"{key}_edges.png")
        est, ref = depth[mask], sample.depth[mask]
        step = max(1, est.size // SCATTER_POINTS_PER_SAMPLE)
        return np.stack([est[::step], ref[::step]]).astype(np.float32)


def _skipped_by_predict(
    ds: BenchmarkDataset, out: Path, settings: ScoreSettings, predicted: dict[str, Any]
) -> list[dict[str, str]]:
    """The samples without a prediction that `predict` found unreadable (skipped here with
    --skip-bad-samples); any other missing prediction stops the run, naming the file."""
    keys = ds.keys()
    missing = [k for k in keys if not prediction_path(out, ds.name, k).is_file()]
    known = {u["key"]: u for u in predicted.get("unreadable", ()) if u.get("key") in missing}
    if settings.skip_bad_samples:
        missing = [k for k in missing if k not in known]
    if not missing:
        return list(known.values())
    first = missing[0]
    why = (
        f"`evaluation predict` could not read it ({known[first].get('error')}); "
        "--skip-bad-samples skips and counts such samples"
        if first in known
        else "run `evaluation predict` for it, or write KEY.npy files "
        "(float [H, W] raw model output of the whole image, any size)"
    )
    raise FileNotFoundError(
        f"{out}/predictions/{ds.name}: no prediction for {len(missing)} of {len(keys)} samples "
        f"(first: {first}.npy); {why}"
    )


def score_dataset(
    ds: BenchmarkDataset,
    out: Path,
    settings: ScoreSettings,
    pred_space: str,
    predicted: dict[str, Any] | None = None,
    launch: Launch | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-sample rows and the dataset's summary entry; `predicted` is the dataset's record in
    predictions.json (what `predict` could not read). The protocol runs on `launch.device`: a
    CUDA device scores there (the `launch.workers` only read files); on the CPU the workers
    score."""
    launch = launch or Launch()
    unreadable = _skipped_by_predict(ds, out, settings, predicted or {})
    skipped = {u["key"] for u in unreadable}
    device = score_device(launch.device)
    keys = ds.keys()
    keys = [k for k in keys if k not in skipped]
    items = _Scored(ds, out, settings, pred_space, device is not None, keys)
    loader = torch.utils.data.DataLoader(
        items,
        batch_size=None,
        num_workers=auto_workers(launch.workers) if len(items) > 1 else 0,
        collate_fn=no_collate,
        worker_init_fn=exit_with_parent(),
    )
    rows, points = [], []
    start = time.perf_counter()
    with progress_bar(len(items), f"score {ds.name}", "img", enabled=launch.progress) as bar:
        for item in bar.iterate(loader):
            if not check_item(item, settings.skip_bad_samples, unreadable):
                continue
            row, pts = item if device is None else items.score_on(device, *item)
            rows.append(row)
            if pts is not None:
                points.append(pts)
    seconds = time.perf_counter() - start
    if points:
        _scatter(np.concatenate(points, axis=1), ds.name, out)
    entry = {
        **summarize(rows),
        "samples": len(rows) + len(unreadable),
        "unreadable": len(unreadable),
        "protocol": protocol_description(
            ds.name, pred_space, settings.score_space, settings.alignment
        ),
        "dataset": ds.describe(),
        "score_seconds_per_sample": round(seconds / max(1, len(rows)), 4),
    }
    bad = [{"dataset": ds.name, "key": u["key"], "status": "unreadable", **u} for u in unreadable]
    return rows + bad, entry


def score_device(device: str) -> torch.device | None:
    """The CUDA device the protocol runs on, or None to score with numpy in the workers."""
    resolved = resolve_device(device)
    return resolved if resolved.type == "cuda" else None


def _scatter(points: np.ndarray, dataset: str, out: Path) -> None:
    from evaluation.figures import save_png, scatter_plot

    image = scatter_plot(points[0], points[1], f"{dataset}: aligned prediction vs ground truth")
    save_png(image, out / "figures" / f"{dataset}_scatter.png")


def resolve_pred_space(out: Path, record: dict[str, Any] | None, given: str | None) -> str:
    recorded = (record or {}).get("pred_space")
    if given is not None and given not in PRED_SPACES:
        raise ValueError(f"--pred-space {given!r} is not one of {PRED_SPACES}")
    if given and recorded and given != recorded:
        raise ValueError(
            f"{out / PREDICTIONS_JSON} says the predictions are {recorded}, not {given}: "
            "leave --pred-space out"
        )
    if not (given or recorded):
        raise ValueError(
            f"{out}: no {PREDICTIONS_JSON}; say what the prediction files hold with "
            "--pred-space disparity|depth"
        )
    return given or recorded


def score_all(
    out: Path,
    datasets: list[BenchmarkDataset],
    settings: ScoreSettings,
    launch: Launch | None = None,
) -> dict[str, Any]:
    """Score every dataset with each alignment (`evaluation.alignment.alignments_for`); write
    per_sample.csv, per_sample.json and summary.json (the first alignment's, and with several
    `by_alignment` and per_sample.<alignment>.csv/.json for the others); return the summary."""
    out = Path(out)
    record = read_predictions_json(out)
    pred_space = resolve_pred_space(out, record, settings.pred_space)
    check_spaces(pred_space, settings.score_space)  # before any sample, on either device
    model = dict((record or {}).get("model", {}))
    model.setdefault("spec", None)
    model["name"] = settings.name or model.get("name") or out.name
    model["pred_space"] = pred_space
    kind = (model.get("teacher") or {}).get("output_kind")
    alignments = alignments_for(settings.alignment, kind)
    for alignment in alignments:
        check_alignment(alignment, pred_space, kind, model["name"])
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "model": model,
        "settings": {
            "score_space": settings.score_space,
            "pred_space": pred_space,
            "alignment": alignments[0],
            "alignments": alignments,
        },
        "versions": environment(),
        "metrics": {
            k: {"label": m.label, "lower_is_better": m.lower_is_better}
            for k, m in METRIC_TABLE.items()
        },
        "datasets": {},
    }
    predicted = (record or {}).get("datasets", {})
    by_alignment: dict[str, dict[str, Any]] = {a: {} for a in alignments}
    rows: dict[str, list[dict[str, Any]]] = {a: [] for a in alignments}
    for ds in datasets:
        info = predicted.get(ds.name, {})
        for alignment in alignments:
            figures = settings.figures and alignment == alignments[0]  # one set of figures
            each = replace(settings, alignment=alignment, figures=figures)
            ds_rows, entry = score_dataset(ds, out, each, pred_space, info, launch)
            entry["processing_res"] = info.get("processing_res")
            entry["predict_seconds_per_sample"] = info.get("seconds_per_sample")
            if "focal" in info:
                entry["focal"] = info["focal"]
            by_alignment[alignment][ds.name] = entry
            rows[alignment] += ds_rows
    summary["datasets"] = by_alignment[alignments[0]]
    if len(alignments) > 1:
        summary["by_alignment"] = by_alignment
    for k, alignment in enumerate(alignments):
        stem = "per_sample" if k == 0 else f"per_sample.{alignment}"
        write_bytes(out / f"{stem}.csv", rows_csv(rows[alignment]).encode())
        per_sample = {"schema": SCHEMA, "alignment": alignment, "samples": rows[alignment]}
        write_json(out / f"{stem}.json", per_sample)
    write_json(out / "summary.json", summary)
    return summary


def rows_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})
    return buf.getvalue()


def _native(a: np.ndarray) -> np.ndarray:
    """`a` in native byte order and contiguous (what `torch.from_numpy` accepts)."""
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
